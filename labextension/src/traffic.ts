import { ServerConnection } from '@jupyterlab/services';

import { button, clearError, h, showError } from './dom';
import { formatLatency, plural } from './format';
import { requestAPI } from './request';
import { IModel } from './types';

/** One logged request, as the server's request log gives it. */
export interface ILoggedRequest {
  id: number;
  time: string;
  version: number;
  kind: string;
  status: number;
  code: string;
  latency_ms: number;
  token: string | null;
  input: unknown[] | null;
  input_note: string | null;
  output: unknown;
}

export interface IShadowStats {
  compared: number;
  agreed: number;
  errors: number;
  agreement: number | null;
  dropped: number;
}

export interface ITrafficPolicy {
  default_version: number;
  split: Record<string, number> | null;
  sticky: boolean;
  shadow: number | null;
  shadow_stats: IShadowStats | null;
  key_header: string;
}

export interface ILatency {
  median: number | null;
}

export interface IComparison {
  a: number;
  b: number;
  cases: number;
  agree: number;
  agreement: number;
  differing: { index: number; input: unknown; a: unknown; b: unknown }[];
  latency_ms: { a: ILatency; b: ILatency };
}

function modelPath(id: string, ...rest: string[]): string {
  return ['models', id, ...rest].map(encodeURIComponent).join('/');
}

/** The three calls behind this section, through the server extension. */
export class TrafficApi {
  constructor(private readonly settings?: ServerConnection.ISettings) {}

  async requests(id: string, limit = 20): Promise<ILoggedRequest[]> {
    const page = await requestAPI<{ records: ILoggedRequest[] }>(
      `${modelPath(id, 'requests')}?limit=${limit}`,
      {},
      this.settings
    );
    return page?.records ?? [];
  }

  policy(id: string): Promise<ITrafficPolicy> {
    return requestAPI<ITrafficPolicy>(
      modelPath(id, 'traffic'),
      {},
      this.settings
    );
  }

  compare(id: string, a: number, b: number): Promise<IComparison> {
    return requestAPI<IComparison>(
      modelPath(id, 'compare'),
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ a, b, limit: 50 })
      },
      this.settings
    );
  }
}

function clip(value: unknown, size = 48): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length <= size ? text : `${text.slice(0, size - 1)}…`;
}

/** "Split: v2 90% · v3 10%", or where all traffic goes without a split. */
export function describeSplit(policy: ITrafficPolicy): string {
  const split = policy.split;
  if (!split || Object.keys(split).length === 0) {
    return `All traffic to v${policy.default_version} (the default)`;
  }
  const total = Object.values(split).reduce((a, b) => a + b, 0) || 1;
  const shares = Object.entries(split)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([v, w]) => `v${v} ${Math.round((100 * w) / total)}%`)
    .join(' · ');
  return `Split: ${shares}${policy.sticky ? ` (sticky by ${policy.key_header})` : ''}`;
}

export function describeShadow(policy: ITrafficPolicy): string | null {
  if (policy.shadow === null) {
    return null;
  }
  const s = policy.shadow_stats;
  if (!s || s.agreement === null) {
    return `Shadow v${policy.shadow}: no answers yet`;
  }
  return (
    `Shadow v${policy.shadow}: ${(100 * s.agreement).toFixed(1)}% agree ` +
    `(${s.compared} compared, ${s.dropped} dropped)`
  );
}

/**
 * A model's traffic: its split and shadow, its recent requests and errors,
 * and a replay of recent traffic on two versions. Loaded when opened.
 */
export class TrafficSection {
  readonly node: HTMLDetailsElement;

  constructor(
    private readonly api: TrafficApi,
    private model: IModel
  ) {
    this.node = h(
      'details',
      { className: 'jp-EasyTensor-traffic' },
      h('summary', {
        className: 'jp-EasyTensor-sectionTitle',
        text: 'Traffic and recent requests'
      }),
      this.policySlot,
      this.errorSlot,
      h(
        'div',
        { className: 'jp-EasyTensor-row' },
        button('Refresh', 'jp-EasyTensor-trafficRefresh', () => {
          void this.load();
        })
      ),
      this.requestsSlot,
      h(
        'div',
        { className: 'jp-EasyTensor-row jp-EasyTensor-compareRow' },
        this.versionA,
        h('span', { text: 'vs' }),
        this.versionB,
        button(
          'Compare on recent traffic',
          'jp-EasyTensor-compare',
          () => {
            void this.compare();
          },
          'Replay the logged inputs on both versions and show where they differ'
        )
      ),
      this.compareSlot
    );
    this.node.addEventListener('toggle', () => {
      if (this.node.open && !this.loaded) {
        void this.load();
      }
    });
    this.setModel(model);
  }

  setModel(model: IModel): void {
    this.model = model;
    const versions = model.versions.map(v => v.version);
    for (const [select, pick] of [
      [this.versionA, model.default_version],
      [this.versionB, Math.max(...versions)]
    ] as [HTMLSelectElement, number][]) {
      const kept = Number(select.value) || pick;
      select.replaceChildren(
        ...versions.map(v => {
          const option = h('option', {
            text: `v${v}`,
            attrs: { value: String(v) }
          });
          option.selected = v === kept;
          return option;
        })
      );
    }
  }

  async load(): Promise<void> {
    this.loaded = true;
    try {
      const [policy, records] = await Promise.all([
        this.api.policy(this.model.id),
        this.api.requests(this.model.id)
      ]);
      clearError(this.errorSlot);
      this.renderPolicy(policy);
      this.renderRequests(records);
    } catch (error) {
      this.loaded = false;
      showError(this.errorSlot, error, 'Could not load the traffic');
    }
  }

  private renderPolicy(policy: ITrafficPolicy): void {
    const shadow = describeShadow(policy);
    this.policySlot.replaceChildren(
      h('div', {
        className: 'jp-EasyTensor-split',
        text: describeSplit(policy)
      }),
      ...(shadow
        ? [h('div', { className: 'jp-EasyTensor-shadow', text: shadow })]
        : [])
    );
  }

  private renderRequests(records: ILoggedRequest[]): void {
    if (records.length === 0) {
      this.requestsSlot.replaceChildren(
        h('div', {
          className: 'jp-EasyTensor-muted',
          text: 'No requests logged (easytensor models log MODEL all turns the log on).'
        })
      );
      return;
    }
    const errors = records.filter(r => r.status >= 400).length;
    const rows = records.map(r =>
      h(
        'tr',
        { className: r.status >= 400 ? 'jp-EasyTensor-requestError' : '' },
        h('td', { text: r.time.slice(11, 19) }),
        h('td', { text: `v${r.version}` }),
        h('td', {
          text: r.status >= 400 ? `${r.status} ${r.code}` : String(r.status)
        }),
        h('td', { text: formatLatency(r.latency_ms) }),
        h('td', {
          text: r.input ? clip(r.input) : `(${r.input_note ?? 'no input'})`
        })
      )
    );
    this.requestsSlot.replaceChildren(
      h('div', {
        className: 'jp-EasyTensor-requestSummary',
        text: `Last ${plural(records.length, 'request')}, ${plural(errors, 'error')}`
      }),
      h(
        'table',
        { className: 'jp-EasyTensor-requests' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ...['time', 'v', 'status', 'latency', 'input'].map(t =>
              h('th', { text: t })
            )
          )
        ),
        h('tbody', {}, ...rows)
      )
    );
  }

  private async compare(): Promise<void> {
    const a = Number(this.versionA.value);
    const b = Number(this.versionB.value);
    this.compareSlot.replaceChildren(
      h('div', { className: 'jp-EasyTensor-muted', text: 'Comparing…' })
    );
    try {
      const c = await this.api.compare(this.model.id, a, b);
      const cases = c.differing.slice(0, 10).map(d =>
        h(
          'li',
          {},
          h('code', { text: clip(d.input, 40) }),
          h('span', {
            text: ` v${c.a}: ${clip(d.a, 30)} · v${c.b}: ${clip(d.b, 30)}`
          })
        )
      );
      this.compareSlot.replaceChildren(
        h('div', {
          className: 'jp-EasyTensor-compareResult',
          text:
            `v${c.a} vs v${c.b}: ${c.agree} of ${c.cases} agree ` +
            `(${(100 * c.agreement).toFixed(1)}%) · median ` +
            `${formatLatency(c.latency_ms.a.median)} vs ${formatLatency(c.latency_ms.b.median)}`
        }),
        ...(cases.length
          ? [h('ul', { className: 'jp-EasyTensor-differing' }, ...cases)]
          : [])
      );
    } catch (error) {
      showError(this.compareSlot, error, 'Could not compare');
    }
  }

  private loaded = false;
  private readonly policySlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly errorSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly requestsSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly compareSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly versionA = h('select', {
    className: 'jp-EasyTensor-compareA',
    attrs: { 'aria-label': 'first version' }
  });
  private readonly versionB = h('select', {
    className: 'jp-EasyTensor-compareB',
    attrs: { 'aria-label': 'second version' }
  });
}
