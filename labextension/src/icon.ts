import { LabIcon } from '@jupyterlab/ui-components';

import iconSvg from '../style/icons/easytensor.svg';

export const easyTensorIcon = new LabIcon({
  name: 'easytensor-jupyter:models',
  svgstr: iconSvg
});
