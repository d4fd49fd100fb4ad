import { JupyterFrontEnd } from '@jupyterlab/application';
import { PageConfig } from '@jupyterlab/coreutils';

import { INotebookBridge } from './services';
import { IKernelDrift } from './types';

/**
 * The panel's view of the open notebooks. Each kernel that loaded EasyTensor keeps the drift of
 * the models it deployed (easytensor_jupyter/drift_watch.py); this asks it with a silent
 * execute request whose user expression returns that report as JSON. Silent requests neither
 * show in the notebook nor count as executions, and they answer only for kernels open in this
 * JupyterLab, which are the ones whose notebooks the user can act on.
 *
 * Notebook widgets are reached through the shell, duck-typed, so the extension needs no
 * notebook packages of its own.
 */

const EXPRESSION =
  "(lambda m: m.report() if m else None)(__import__('sys').modules.get(" +
  "'easytensor_jupyter.drift_watch'))";

interface IKernelLike {
  status: string;
  requestExecute(content: Record<string, unknown>): {
    done: Promise<{ content: Record<string, unknown> }>;
  };
}

interface ISignalLike<T> {
  connect(slot: (sender: unknown, value: T) => void): void;
}

interface ICellLike {
  model: { id: string };
}

interface INotebookWidgetLike {
  id: string;
  context: { path: string; ready: Promise<void> };
  sessionContext: {
    session: { kernel: IKernelLike | null } | null;
    iopubMessage: ISignalLike<{ header: { msg_type: string } }>;
    statusChanged: ISignalLike<string>;
  };
  content: {
    widgets: readonly ICellLike[];
    activeCellIndex: number;
    scrollToItem?(index: number): Promise<void>;
    scrollToCell?(cell: unknown): Promise<void>;
  };
}

function isNotebook(widget: unknown): widget is INotebookWidgetLike {
  const w = widget as Partial<INotebookWidgetLike> | null;
  return !!(
    w &&
    w.sessionContext &&
    w.context &&
    typeof w.context.path === 'string' &&
    w.context.path.endsWith('.ipynb') &&
    w.content &&
    Array.isArray(w.content.widgets)
  );
}

/** A server path for what the kernel recorded (JPY_SESSION_NAME is absolute). */
export function relativePath(notebook: string, serverRoot: string): string {
  const root = serverRoot.replace(/\/+$/, '');
  if (!notebook.startsWith('/')) {
    return notebook;
  }
  if (root && !root.startsWith('~') && notebook.startsWith(`${root}/`)) {
    return notebook.slice(root.length + 1);
  }
  if (root.startsWith('~')) {
    const tail = `${root.slice(1)}/`;
    const at = notebook.indexOf(tail);
    if (at >= 0) {
      return notebook.slice(at + tail.length);
    }
  }
  return notebook;
}

export class NotebookBridge implements INotebookBridge {
  constructor(private readonly app: JupyterFrontEnd) {}

  private notebooks(): INotebookWidgetLike[] {
    const found: INotebookWidgetLike[] = [];
    for (const widget of this.app.shell.widgets('main')) {
      if (isNotebook(widget)) {
        found.push(widget);
        this.watch(widget);
      }
    }
    return found;
  }

  /** After a cell ran (an execute_input went by, then the kernel went idle), call back. */
  private watch(widget: INotebookWidgetLike): void {
    if (this.watched.has(widget)) {
      return;
    }
    this.watched.add(widget);
    let ran = false;
    widget.sessionContext.iopubMessage.connect((_, msg) => {
      if (msg.header.msg_type === 'execute_input') {
        ran = true;
      }
    });
    widget.sessionContext.statusChanged.connect((_, status) => {
      if (status === 'idle' && ran) {
        ran = false;
        this.callbacks.forEach(cb => cb());
      }
    });
  }

  onChange(callback: () => void): void {
    this.callbacks.push(callback);
    this.notebooks();
  }

  async drift(): Promise<IKernelDrift[]> {
    const reports = await Promise.all(
      this.notebooks().map(async widget => {
        const kernel = widget.sessionContext.session?.kernel;
        if (!kernel || kernel.status === 'dead') {
          return [];
        }
        try {
          const reply = await kernel.requestExecute({
            code: '',
            silent: true,
            store_history: false,
            user_expressions: { easytensor: EXPRESSION }
          }).done;
          const answers = reply.content.user_expressions as
            Record<string, { data?: Record<string, unknown> }> | undefined;
          const data = answers?.easytensor?.data?.['application/json'] as
            { models?: Record<string, IKernelDrift> } | undefined;
          return Object.values(data?.models ?? {}).map(d => ({
            ...d,
            notebook: widget.context.path
          }));
        } catch {
          return []; // a kernel restarting or gone has nothing to say
        }
      })
    );
    return reports.flat();
  }

  async openCell(
    notebook: string,
    cellId: string | null
  ): Promise<string | null> {
    const path = relativePath(notebook, PageConfig.getOption('serverRoot'));
    try {
      await this.app.serviceManager.contents.get(path, { content: false });
    } catch {
      return `The notebook ${path} is gone: it was moved, renamed or deleted.`;
    }
    const widget = (await this.app.commands.execute('docmanager:open', {
      path
    })) as unknown;
    if (!isNotebook(widget)) {
      return `${path} did not open as a notebook.`;
    }
    await widget.context.ready;
    this.app.shell.activateById(widget.id);
    if (!cellId) {
      return `Opened ${path}; this version did not record which cell it came from.`;
    }
    const index = widget.content.widgets.findIndex(c => c.model.id === cellId);
    if (index < 0) {
      return `${path} no longer has the cell this version came from (id ${cellId}): it was deleted or the notebook changed.`;
    }
    widget.content.activeCellIndex = index;
    const cell = widget.content.widgets[index];
    if (widget.content.scrollToCell) {
      await widget.content.scrollToCell(cell);
    } else if (widget.content.scrollToItem) {
      await widget.content.scrollToItem(index);
    }
    return null;
  }

  private readonly callbacks: (() => void)[] = [];
  private readonly watched = new WeakSet<INotebookWidgetLike>();
}
