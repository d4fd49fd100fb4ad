import { IEasyTensorApi } from './api';

export interface IConfirmOptions {
  title: string;
  body: string;
  /** Label of the destructive button. */
  accept: string;
}

/**
 * Everything the views reach outside the DOM for. index.ts wires JupyterLab's
 * dialogs and clipboard in; tests pass fakes.
 */
export interface IUiServices {
  api: IEasyTensorApi;
  copy(text: string): void;
  confirm(options: IConfirmOptions): Promise<boolean>;
}
