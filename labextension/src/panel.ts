import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { button, clearError, h, showError } from './dom';
import { describeError } from './errors';
import { formatBytes, formatLatency, plural } from './format';
import { ModelView } from './modelView';
import { IUiServices } from './services';
import { IKernelDrift, IModel, IServerStatus } from './types';
import { driftBadge } from './drift';
import { statusBadge } from './versions';

export const PANEL_ID = 'easytensor-models';

const EMPTY_HINT =
  'No models deployed yet. In a notebook, put a trained model in a variable ' +
  'and run a cell starting with:';
const DEPLOY_MAGIC = '%%easytensor_model NAME --instance VAR';

/** Left side panel: the deployed models, and the selected one's detail. */
export class EasyTensorPanel extends Widget {
  constructor(private readonly services: IUiServices) {
    super();
    this.id = PANEL_ID;
    this.addClass('jp-EasyTensor-panel');
    this.title.caption = 'EasyTensor models';

    const refresh = button(
      'Refresh',
      'jp-EasyTensor-refresh',
      () => {
        void this.refresh();
      },
      'Reload the list of models'
    );
    this.node.append(
      h(
        'div',
        { className: 'jp-EasyTensor-header' },
        h('h2', {
          className: 'jp-EasyTensor-heading',
          text: 'EasyTensor models'
        }),
        refresh
      ),
      this.statusLine,
      this.errorSlot,
      this.listSlot,
      this.detailSlot
    );
    this.node.tabIndex = -1;
    this.renderList();
    services.notebooks?.onChange(() => {
      if (this.isVisible) {
        void this.refresh();
      }
    });
  }

  /** The selected model id, or null. */
  get selectedId(): string | null {
    return this.selected;
  }

  /** Reloads status and models; overlapping calls never run loads in parallel. */
  refresh(): Promise<void> {
    if (this.pending) {
      // The load in flight may have started before the change the caller
      // wants to see, so run one more after it.
      this.stale = true;
      return this.pending;
    }
    const run = async () => {
      do {
        this.stale = false;
        await this.load();
      } while (this.stale);
    };
    this.pending = run().finally(() => {
      this.pending = null;
    });
    return this.pending;
  }

  select(modelId: string | null): void {
    this.selected = modelId;
    const model = this.models.find(m => m.id === modelId) ?? null;
    this.renderList();
    this.renderDetail(model);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.refreshIfIdle();
  }

  protected onActivateRequest(msg: Message): void {
    super.onActivateRequest(msg);
    if (this.isVisible) {
      this.refreshIfIdle();
    }
    if (!this.node.contains(document.activeElement)) {
      this.node.focus();
    }
  }

  /** Showing and activating arrive together; one load answers both. */
  private refreshIfIdle(): void {
    if (!this.pending) {
      void this.refresh();
    }
  }

  private async load(): Promise<void> {
    this.node.setAttribute('data-loading', 'true');
    const [status, models, drifts] = await Promise.allSettled([
      this.services.api.status(),
      this.services.api.listModels(),
      this.services.notebooks?.drift() ?? Promise.resolve([])
    ]);
    this.drifts = drifts.status === 'fulfilled' ? drifts.value : [];
    this.node.removeAttribute('data-loading');
    this.loaded = true;

    this.renderStatus(status, models.status === 'rejected');
    if (models.status === 'fulfilled') {
      clearError(this.errorSlot);
      this.models = models.value;
      this.node.setAttribute('data-state', 'ready');
    } else {
      showError(this.errorSlot, models.reason, 'Could not load models');
      this.node.setAttribute('data-state', 'error');
      // Keep the last good list on screen: a transient error should not
      // throw away what the user was looking at.
    }
    this.renderList(models.status === 'rejected');
    const current = this.models.find(m => m.id === this.selected) ?? null;
    if (!current) {
      this.selected = null;
    }
    this.renderDetail(current);
  }

  /** When the model list failed too, its error box already says why. */
  private renderStatus(
    result: PromiseSettledResult<IServerStatus>,
    modelsFailed: boolean
  ): void {
    this.statusLine.classList.remove('jp-mod-warn');
    this.statusLine.title = '';
    if (result.status === 'rejected') {
      this.statusLine.textContent = modelsFailed
        ? 'Server status unavailable'
        : `Server status unavailable: ${describeError(result.reason)}`;
      this.statusLine.classList.add('jp-mod-warn');
      return;
    }
    const s = result.value;
    if (!s.connected) {
      // The full reason can be a traceback: the first line, the rest on hover.
      const firstLine = (s.error ?? '').split('\n')[0];
      const why = firstLine && !modelsFailed ? `: ${firstLine}` : '';
      this.statusLine.textContent = `Inference server not connected${why}`;
      this.statusLine.title = s.error ?? '';
      this.statusLine.classList.add('jp-mod-warn');
      return;
    }
    const where = s.url ?? 'inference server';
    const mode = s.embedded ? 'embedded' : 'external';
    const version = s.version ? ` · v${s.version}` : '';
    this.statusLine.textContent = `${where} (${mode})${version}`;
  }

  private renderList(failed = false): void {
    if (!this.loaded) {
      this.listSlot.replaceChildren(
        h('div', { className: 'jp-EasyTensor-muted', text: 'Loading…' })
      );
      return;
    }
    if (failed && !this.models.length) {
      // Nothing is known: an empty-state hint would be a false claim.
      this.listSlot.replaceChildren();
      return;
    }
    if (!this.models.length) {
      this.listSlot.replaceChildren(
        h(
          'div',
          { className: 'jp-EasyTensor-empty' },
          h('p', { text: EMPTY_HINT }),
          h('pre', { className: 'jp-EasyTensor-magic', text: DEPLOY_MAGIC }),
          h('p', {
            className: 'jp-EasyTensor-muted',
            text: 'Then press Refresh.'
          })
        )
      );
      return;
    }
    this.listSlot.replaceChildren(
      h(
        'ul',
        {
          className: 'jp-EasyTensor-modelList',
          attrs: { role: 'listbox', 'aria-label': 'Deployed models' }
        },
        ...this.models.map(m => this.renderItem(m))
      )
    );
  }

  private renderItem(model: IModel): HTMLElement {
    const selected = model.id === this.selected;
    const item = h(
      'li',
      {
        className: 'jp-EasyTensor-modelItem',
        attrs: {
          'data-model-id': model.id,
          role: 'option',
          tabindex: '0',
          'aria-selected': String(selected)
        }
      },
      h(
        'div',
        { className: 'jp-EasyTensor-modelRow' },
        h('span', { className: 'jp-EasyTensor-modelName', text: model.name }),
        driftBadge(this.driftsOf(model.id)),
        statusBadge(model.status)
      ),
      h('div', {
        className: 'jp-EasyTensor-modelMeta',
        text: [
          `v${model.default_version}`,
          plural(model.versions.length, 'version'),
          formatBytes(model.size_bytes),
          `last ${formatLatency(model.stats?.last_latency_ms)}`
        ].join(' · ')
      })
    );
    item.classList.toggle('jp-mod-selected', selected);
    const choose = () => this.select(model.id);
    item.addEventListener('click', choose);
    item.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        choose();
      }
    });
    return item;
  }

  private renderDetail(model: IModel | null): void {
    if (!model) {
      this.view = null;
      this.detailSlot.replaceChildren();
      return;
    }
    if (this.view && this.view.modelId === model.id) {
      this.view.update(model);
      this.view.setDrift(this.driftsOf(model.id));
      return;
    }
    this.view = new ModelView(this.services, model, {
      changed: updated => {
        this.models = this.models.map(m => (m.id === updated.id ? updated : m));
        this.renderList();
      },
      removed: () => {
        void this.refresh();
      }
    });
    this.view.setDrift(this.driftsOf(model.id));
    this.detailSlot.replaceChildren(this.view.node);
  }

  private driftsOf(modelId: string): IKernelDrift[] {
    return this.drifts.filter(d => d.model_id === modelId);
  }

  private models: IModel[] = [];
  private drifts: IKernelDrift[] = [];
  private selected: string | null = null;
  private loaded = false;
  private pending: Promise<void> | null = null;
  private stale = false;
  private view: ModelView | null = null;
  private readonly statusLine = h('div', { className: 'jp-EasyTensor-status' });
  private readonly errorSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly listSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly detailSlot = h('div', { className: 'jp-EasyTensor-slot' });
}
