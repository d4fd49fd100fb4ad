import { h } from './dom';
import { formatDate, plural } from './format';
import { IModel, IReplica } from './types';

/** One line per replica: state, node, since, requests, device. */
export function replicaLine(r: IReplica): string {
  const node = r.node ? r.node.slice(0, 12) : '?';
  const parts = [r.state, `node ${node}${r.node_ip ? ` (${r.node_ip})` : ''}`];
  if (r.started_at) {
    parts.push(`since ${formatDate(r.started_at)}`);
  }
  if (typeof r.requests === 'number') {
    parts.push(plural(r.requests, 'request'));
  }
  if (r.device) {
    parts.push(r.device);
  }
  return parts.join(' · ');
}

/** The replicas (Ray) or worker processes (local) of the default version; null when none. */
export function renderReplicas(
  model: Pick<IModel, 'replicas'>
): HTMLElement | null {
  const replicas = model.replicas ?? [];
  if (!replicas.length) {
    return null;
  }
  return h(
    'ul',
    { className: 'jp-EasyTensor-replicas jp-EasyTensor-muted' },
    ...replicas.map(r =>
      h(
        'li',
        {
          className: 'jp-EasyTensor-replica',
          attrs: { 'data-replica-id': r.id, 'data-state': r.state }
        },
        h('code', { text: r.id }),
        h('span', { text: ` ${replicaLine(r)}` })
      )
    )
  );
}
