import { h } from './dom';
import { IKernelDrift } from './types';

/** Reports that say something: a kernel whose model differs, or cannot tell. */
export function notable(drifts: IKernelDrift[]): IKernelDrift[] {
  return drifts.filter(d => d.state !== 'same');
}

/** The list badge: the kernel's model differs from what the endpoint serves. */
export function driftBadge(drifts: IKernelDrift[]): HTMLElement | null {
  const shown = notable(drifts);
  if (!shown.length) {
    return null;
  }
  const differs = shown.some(d => d.state === 'drifted');
  return h('span', {
    className: `jp-EasyTensor-badge jp-EasyTensor-driftBadge jp-EasyTensor-drift-${differs ? 'drifted' : 'unknown'}`,
    text: differs ? 'kernel differs' : 'drift unknown',
    title: shown.map(d => d.message).join('\n')
  });
}

/** The detail view's notice: per notebook, what its kernel would deploy differently. */
export function renderDriftNotice(drifts: IKernelDrift[]): HTMLElement | null {
  const shown = notable(drifts);
  if (!shown.length) {
    return null;
  }
  return h(
    'div',
    { className: 'jp-EasyTensor-driftNotice' },
    ...shown.map(d => {
      const where =
        d.version === null ? 'the deployed default' : `v${d.version}`;
      const title =
        d.state === 'unknown'
          ? `${d.notebook}: drift from ${where} unknown`
          : `${d.notebook}: the kernel's model differs from the deployed ${where}`;
      const lines = d.state === 'unknown' ? [d.reason ?? d.message] : d.lines;
      return h(
        'div',
        {
          className: 'jp-EasyTensor-driftEntry',
          attrs: { 'data-state': d.state, 'data-kinds': d.kinds.join(' ') }
        },
        h('strong', { text: title }),
        h('ul', {}, ...lines.map(line => h('li', { text: line }))),
        d.state === 'drifted'
          ? h('div', {
              className: 'jp-EasyTensor-muted',
              text: 'Re-run its %%easytensor_model cell to deploy it.'
            })
          : null
      );
    })
  );
}
