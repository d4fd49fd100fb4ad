import { IEasyTensorApi } from './api';
import { IKernelDrift } from './types';

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
  /** The open notebooks and their kernels (absent outside JupyterLab). */
  notebooks?: INotebookBridge;
}

/** What the panel asks of the open notebooks: see notebooks.ts. */
export interface INotebookBridge {
  /** Each open kernel's drift report, one entry per model it deployed. */
  drift(): Promise<IKernelDrift[]>;
  /** Calls back after a cell ran in any open notebook. */
  onChange(callback: () => void): void;
  /** Opens the notebook at the cell; resolves to null, or why it could not. */
  openCell(notebook: string, cellId: string | null): Promise<string | null>;
}
