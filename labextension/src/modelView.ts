import { buildCurl } from './curl';
import { button, clearError, copyButton, h, showError } from './dom';
import { formatLatency, formatScaling, plural } from './format';
import { Playground } from './playground';
import { IUiServices } from './services';
import { TokenSection } from './tokens';
import { IKernelDrift, IModel, IModelVersion } from './types';
import { renderDiff } from './diffView';
import { renderDriftNotice } from './drift';
import { TrafficApi, TrafficSection } from './traffic';
import { renderReplicas } from './replicas';
import { renderVersions, statusBadge } from './versions';

export interface IModelViewCallbacks {
  /** The server returned a newer copy of the model (e.g. after a rollback). */
  changed(model: IModel): void;
  /** The model or one of its versions is gone; the list should reload. */
  removed(modelId: string, wholeModel: boolean): void;
}

/** Detail of the selected model: endpoint, curl, playground, versions, delete. */
export class ModelView {
  readonly node: HTMLElement;

  constructor(
    private readonly services: IUiServices,
    private model: IModel,
    private readonly callbacks: IModelViewCallbacks
  ) {
    this.playground = new Playground(
      services.api,
      model,
      () => this.renderCurl(),
      () => void this.reloadStats()
    );
    this.tokens = new TokenSection(services, model.id);
    this.traffic = new TrafficSection(new TrafficApi(), model);

    const copy = copyButton(
      'jp-EasyTensor-copy',
      () => this.curl.textContent ?? '',
      text => this.services.copy(text),
      'Copy the curl command'
    );
    // Far from the name and the everyday buttons, so it is never hit by accident.
    const remove = button(
      'Delete model…',
      'jp-EasyTensor-delete jp-mod-warn',
      () => {
        void this.deleteModel();
      },
      'Delete this model and all its versions (asks first)'
    );

    this.node = h(
      'div',
      {
        className: 'jp-EasyTensor-detail',
        attrs: { 'data-model-id': model.id }
      },
      h('div', { className: 'jp-EasyTensor-detailHeader' }, this.title),
      this.summary,
      this.driftSlot,
      this.scaling,
      this.replicasSlot,
      this.actionErrorSlot,
      h('h3', { className: 'jp-EasyTensor-sectionTitle', text: 'Endpoint' }),
      this.endpoint,
      h(
        'div',
        { className: 'jp-EasyTensor-curlBox' },
        h(
          'div',
          { className: 'jp-EasyTensor-curlHeader' },
          h('span', { className: 'jp-EasyTensor-muted', text: 'curl' }),
          copy
        ),
        this.curl
      ),
      this.playground.node,
      h('h3', { className: 'jp-EasyTensor-sectionTitle', text: 'Versions' }),
      this.sourceSlot,
      this.versionsSlot,
      this.diffSlot,
      this.tokens.node,
      this.traffic.node,
      h('div', { className: 'jp-EasyTensor-dangerZone' }, remove)
    );
    this.render();
  }

  get modelId(): string {
    return this.model.id;
  }

  update(model: IModel): void {
    this.model = model;
    this.playground.setModel(model);
    this.traffic.setModel(model);
    this.render();
  }

  private render(): void {
    const m = this.model;
    this.title.replaceChildren(
      h('h2', { className: 'jp-EasyTensor-detailName', text: m.name }),
      h('code', { className: 'jp-EasyTensor-muted', text: m.id })
    );
    this.summary.replaceChildren(
      statusBadge(m.status),
      h('span', {
        text:
          `${plural(m.stats?.requests ?? 0, 'request')}, ` +
          `${plural(m.stats?.errors ?? 0, 'error')}, ` +
          `last ${formatLatency(m.stats?.last_latency_ms)}`
      })
    );
    const scaling = formatScaling(m);
    this.scaling.textContent = scaling ? `Scaling: ${scaling}` : '';
    this.scaling.hidden = scaling === null;
    const replicas = renderReplicas(m);
    this.replicasSlot.replaceChildren(...(replicas ? [replicas] : []));
    this.endpoint.textContent = m.endpoint;
    this.versionsSlot.replaceChildren(
      renderVersions(m, {
        setDefault: v => void this.setDefault(v),
        deleteVersion: v => void this.deleteVersion(v),
        diff: (from, to) => void this.showDiff(from, to),
        openCell: this.services.notebooks
          ? v => void this.openCell(v)
          : undefined
      })
    );
    this.renderCurl();
  }

  /** What the open kernels say about this model (drift_watch.py). */
  setDrift(drifts: IKernelDrift[]): void {
    const notice = renderDriftNotice(drifts);
    this.driftSlot.replaceChildren(...(notice ? [notice] : []));
  }

  private async showDiff(from: number, to: number): Promise<void> {
    await this.act(`Could not compare v${from} with v${to}`, async () => {
      const diff = await this.services.api.diffVersions(
        this.model.id,
        from,
        to
      );
      this.diffSlot.replaceChildren(
        renderDiff(diff, () => this.diffSlot.replaceChildren())
      );
      this.diffSlot.scrollIntoView?.({ block: 'nearest' });
    });
  }

  private async openCell(v: IModelVersion): Promise<void> {
    const notebooks = this.services.notebooks;
    const notebook = v.provenance?.notebook;
    if (!notebooks || !notebook) {
      return;
    }
    this.sourceSlot.replaceChildren();
    const problem = await notebooks.openCell(
      notebook,
      v.provenance?.cell_id ?? null
    );
    if (problem) {
      this.sourceSlot.replaceChildren(
        h('div', {
          className: 'jp-EasyTensor-sourceProblem jp-mod-warn',
          text: problem
        })
      );
    }
  }

  private renderCurl(): void {
    this.curl.textContent = buildCurl(this.playground.curlOptions());
  }

  /** After a query the counts moved: fetch them, quietly (the answer is what matters). */
  private async reloadStats(): Promise<void> {
    try {
      const model = await this.services.api.getModel(this.model.id);
      if (model.id !== this.model.id) {
        return;
      }
      this.update(model);
      this.callbacks.changed(model);
    } catch {
      // The next refresh shows the counts; an error here would hide the answer.
    }
  }

  private async setDefault(version: number): Promise<void> {
    await this.act(`Could not make v${version} the default`, async () => {
      const model = await this.services.api.setDefaultVersion(
        this.model.id,
        version
      );
      this.update(model);
      this.callbacks.changed(model);
    });
  }

  private async deleteVersion(version: number): Promise<void> {
    const ok = await this.services.confirm({
      title: 'Delete version',
      body: `Delete v${version} of "${this.model.name}"? Its weights are removed from disk.`,
      accept: 'Delete'
    });
    if (!ok) {
      return;
    }
    await this.act(`Could not delete v${version}`, async () => {
      await this.services.api.deleteVersion(this.model.id, version);
      this.callbacks.removed(this.model.id, false);
    });
  }

  private async deleteModel(): Promise<void> {
    const count = this.model.versions.length;
    const ok = await this.services.confirm({
      title: 'Delete model',
      body:
        `Delete "${this.model.name}" and its ${plural(count, 'version')}? ` +
        'Its endpoint stops answering.',
      accept: 'Delete'
    });
    if (!ok) {
      return;
    }
    await this.act('Could not delete the model', async () => {
      await this.services.api.deleteModel(this.model.id);
      this.callbacks.removed(this.model.id, true);
    });
  }

  /** Runs a server action with the buttons locked and its error shown inline. */
  private async act(
    context: string,
    action: () => Promise<void>
  ): Promise<void> {
    clearError(this.actionErrorSlot);
    this.node.setAttribute('data-busy', 'true');
    const buttons = Array.from(
      this.node.querySelectorAll<HTMLButtonElement>(
        '.jp-EasyTensor-setDefault, .jp-EasyTensor-deleteVersion, .jp-EasyTensor-delete, .jp-EasyTensor-diffButton'
      )
    ).filter(b => !b.disabled);
    buttons.forEach(b => (b.disabled = true));
    try {
      await action();
    } catch (error) {
      showError(this.actionErrorSlot, error, context);
    } finally {
      buttons.forEach(b => (b.disabled = false));
      this.node.removeAttribute('data-busy');
    }
  }

  private readonly playground: Playground;
  private readonly tokens: TokenSection;
  private readonly traffic: TrafficSection;
  private readonly title = h('div', { className: 'jp-EasyTensor-detailTitle' });
  private readonly summary = h('div', { className: 'jp-EasyTensor-summary' });
  private readonly scaling = h('div', {
    className: 'jp-EasyTensor-scaling jp-EasyTensor-muted'
  });
  private readonly replicasSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly actionErrorSlot = h('div', {
    className: 'jp-EasyTensor-slot'
  });
  private readonly endpoint = h('code', {
    className: 'jp-EasyTensor-endpoint'
  });
  private readonly curl = h('pre', { className: 'jp-EasyTensor-curl' });
  private readonly versionsSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly driftSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly diffSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly sourceSlot = h('div', { className: 'jp-EasyTensor-slot' });
}
