import { button, h } from './dom';
import { ITensorSummary, IVersionDiff } from './types';

function tensorLine(label: string, s: ITensorSummary): string {
  if (!s.changed.length && !s.added.length && !s.removed.length) {
    return `${label}: unchanged`;
  }
  const parts: string[] = [];
  if (s.changed.length) {
    const deltas = s.changed
      .map(c => c.max_abs_diff)
      .filter((d): d is number => d !== null);
    const most = deltas.length
      ? `, max abs difference ${Number(Math.max(...deltas).toPrecision(4))}`
      : '';
    parts.push(
      `${s.changed.length} of ${s.total ?? '?'} tensors changed${most}`
    );
  }
  if (s.added.length) {
    parts.push(`added ${s.added.join(', ')}`);
  }
  if (s.removed.length) {
    parts.push(`removed ${s.removed.join(', ')}`);
  }
  return `${label}: ${parts.join('; ')}`;
}

/** One unified diff, each line coloured by its first character. */
function unified(text: string): HTMLElement {
  const pre = h('pre', { className: 'jp-EasyTensor-diffText' });
  for (const line of text.replace(/\n$/, '').split('\n')) {
    const kind =
      line.startsWith('+++') || line.startsWith('---')
        ? 'file'
        : line.startsWith('@@')
          ? 'hunk'
          : line.startsWith('+')
            ? 'add'
            : line.startsWith('-')
              ? 'del'
              : 'ctx';
    pre.append(
      h('span', { className: `jp-EasyTensor-diff-${kind}`, text: `${line}\n` })
    );
  }
  return pre;
}

/** The difference between two versions: manifest fields, weights, then each file's diff. */
export function renderDiff(diff: IVersionDiff, close: () => void): HTMLElement {
  const head = h(
    'div',
    { className: 'jp-EasyTensor-diffHeader' },
    h('strong', { text: `v${diff.from} → v${diff.to}` }),
    button('Close', 'jp-EasyTensor-closeDiff', close, 'Hide the diff')
  );
  if (diff.same) {
    return h(
      'div',
      { className: 'jp-EasyTensor-diff', attrs: { 'data-same': 'true' } },
      head,
      h('div', { className: 'jp-EasyTensor-muted', text: 'No differences.' })
    );
  }
  const fields = Object.entries(diff.manifest).map(([name, change]) =>
    h('li', {
      className: 'jp-EasyTensor-diffField',
      text: `${name}: ${JSON.stringify(change.from)} → ${JSON.stringify(change.to)}`
    })
  );
  const tensors = [
    tensorLine('weights', diff.weights),
    ...Object.entries(diff.data_tensors ?? {}).map(([f, s]) => tensorLine(f, s))
  ];
  return h(
    'div',
    { className: 'jp-EasyTensor-diff' },
    head,
    h(
      'ul',
      { className: 'jp-EasyTensor-diffSummary' },
      ...fields,
      ...tensors.map(t =>
        h('li', { className: 'jp-EasyTensor-diffWeights', text: t })
      )
    ),
    ...diff.files.map(f =>
      h(
        'div',
        {
          className: 'jp-EasyTensor-diffFile',
          attrs: { 'data-file': f.name }
        },
        h('div', {
          className: 'jp-EasyTensor-muted',
          text: `${f.name} (${f.status})`
        }),
        f.diff ? unified(f.diff) : null
      )
    )
  );
}
