import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Clipboard,
  Dialog,
  ICommandPalette,
  showDialog
} from '@jupyterlab/apputils';

import { EasyTensorClient } from './api';
import { easyTensorIcon } from './icon';
import { EasyTensorPanel, PANEL_ID } from './panel';
import { NotebookBridge } from './notebooks';
import { IUiServices } from './services';

export namespace CommandIDs {
  export const open = 'easytensor:open';
  export const refresh = 'easytensor:refresh';
}

const PALETTE_CATEGORY = 'EasyTensor';

function uiServices(app: JupyterFrontEnd): IUiServices {
  return {
    api: new EasyTensorClient(app.serviceManager.serverSettings),
    notebooks: new NotebookBridge(app),
    copy: text => Clipboard.copyToSystem(text),
    confirm: async ({ title, body, accept }) => {
      const result = await showDialog({
        title,
        body,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: accept })]
      });
      return result.button.accept;
    }
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'easytensor-jupyter:plugin',
  description:
    'Side panel to list, query and manage PyTorch models published with EasyTensor.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const panel = new EasyTensorPanel(uiServices(app));
    panel.title.icon = easyTensorIcon;
    app.shell.add(panel, 'left', { rank: 700 });
    restorer?.add(panel, PANEL_ID);

    app.commands.addCommand(CommandIDs.open, {
      label: 'Open EasyTensor models',
      caption: 'Show the deployed EasyTensor models',
      icon: easyTensorIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh EasyTensor models',
      caption: 'Reload the deployed EasyTensor models',
      execute: async () => {
        app.shell.activateById(panel.id);
        await panel.refresh();
      }
    });
    for (const command of [CommandIDs.open, CommandIDs.refresh]) {
      palette?.addItem({ command, category: PALETTE_CATEGORY });
    }
  }
};

export default plugin;
