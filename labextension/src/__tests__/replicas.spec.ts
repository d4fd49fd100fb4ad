import { renderReplicas, replicaLine } from '../replicas';
import { IReplica } from '../types';

const running: IReplica = {
  id: 'r6cvwlt1',
  node: '5e47d800bf9a97aeded4286bc333c590',
  node_ip: '127.0.0.1',
  state: 'running',
  started_at: null,
  requests: 1,
  device: 'cpu',
  pid: 42
};

describe('replicas', () => {
  it('says state, node, requests and device on one line', () => {
    expect(replicaLine(running)).toBe(
      'running · node 5e47d800bf9a (127.0.0.1) · 1 request · cpu'
    );
    expect(
      replicaLine({ id: 'x', node: '', state: 'pending', requests: null })
    ).toBe('pending · node ?');
  });

  it('lists each replica, and nothing for a server that sends none', () => {
    const pending: IReplica = { id: 'p1', node: '', state: 'pending' };
    const list = renderReplicas({ replicas: [running, pending] });
    expect(list).not.toBeNull();
    const items = Array.from(list!.querySelectorAll('li'));
    expect(items.map(li => li.getAttribute('data-state'))).toEqual([
      'running',
      'pending'
    ]);
    expect(items[0].textContent).toContain('r6cvwlt1');
    expect(renderReplicas({})).toBeNull();
    expect(renderReplicas({ replicas: [] })).toBeNull();
  });
});
