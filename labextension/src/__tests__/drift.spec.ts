import { renderDiff } from '../diffView';
import { driftBadge, renderDriftNotice } from '../drift';
import { relativePath } from '../notebooks';
import { renderVersions } from '../versions';
import { IKernelDrift, IVersionDiff } from '../types';
import { model, version } from './fixtures';

function drift(overrides: Partial<IKernelDrift> = {}): IKernelDrift {
  return {
    model_id: 'm1',
    name: 'News',
    version: 3,
    state: 'drifted',
    kinds: ['weights'],
    lines: ['weights changed: 1 of 2 tensors, max abs difference 0.5'],
    message: 'The kernel differs',
    notebook: 'work/news.ipynb',
    ...overrides
  };
}

describe('drift notice', () => {
  it('shows what changed, per notebook, and nothing when the kernel matches', () => {
    const node = renderDriftNotice([drift()]);
    expect(node?.textContent).toContain(
      "work/news.ipynb: the kernel's model differs from the deployed v3"
    );
    expect(node?.textContent).toContain('max abs difference 0.5');
    expect(renderDriftNotice([drift({ state: 'same' })])).toBeNull();
    expect(driftBadge([drift({ state: 'same' })])).toBeNull();
    expect(driftBadge([drift()])?.textContent).toBe('kernel differs');
  });

  it('says plainly when drift is unknown', () => {
    const node = renderDriftNotice([
      drift({ state: 'unknown', reason: 'v3 was deployed before hashes' })
    ]);
    expect(node?.textContent).toContain('drift from v3 unknown');
    expect(node?.textContent).toContain('v3 was deployed before hashes');
    expect(driftBadge([drift({ state: 'unknown' })])?.textContent).toBe(
      'drift unknown'
    );
  });
});

describe('version diff view', () => {
  const diff: IVersionDiff = {
    from: 2,
    to: 3,
    same: false,
    files: [
      {
        name: 'model.py',
        status: 'changed',
        diff: '--- v2/model.py\n+++ v3/model.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n'
      }
    ],
    manifest: { init_kwargs: { from: { h: 8 }, to: { h: 16 } } },
    weights: {
      total: 4,
      changed: [{ name: 'fc.weight', max_abs_diff: 0.25 }],
      added: [],
      removed: []
    },
    data_tensors: {}
  };

  it('lists manifest and weight changes, then coloured unified diffs', () => {
    const node = renderDiff(diff, () => undefined);
    expect(node.textContent).toContain('v2 → v3');
    expect(node.textContent).toContain('init_kwargs: {"h":8} → {"h":16}');
    expect(node.textContent).toContain(
      'weights: 1 of 4 tensors changed, max abs difference 0.25'
    );
    expect(node.querySelector('.jp-EasyTensor-diff-del')?.textContent).toBe(
      '-a = 1\n'
    );
    expect(node.querySelector('.jp-EasyTensor-diff-add')?.textContent).toBe(
      '+a = 2\n'
    );
  });

  it('says when two versions are the same', () => {
    const node = renderDiff({ ...diff, same: true }, () => undefined);
    expect(node.textContent).toContain('No differences.');
  });
});

describe('source cell', () => {
  it('turns the absolute path the kernel recorded into a server path', () => {
    expect(relativePath('/srv/root/a/b.ipynb', '/srv/root')).toBe('a/b.ipynb');
    expect(relativePath('/home/u/work/b.ipynb', '~/work')).toBe('b.ipynb');
    expect(relativePath('a/b.ipynb', '/srv')).toBe('a/b.ipynb');
  });

  it('offers Open the source cell and Diff only where they apply', () => {
    const opened: number[] = [];
    const m = model({
      versions: [
        version(1, { provenance: { notebook: '/r/n.ipynb', cell_id: 'c1' } }),
        version(2)
      ]
    });
    const list = renderVersions(m, {
      setDefault: () => undefined,
      deleteVersion: () => undefined,
      diff: () => undefined,
      openCell: v => opened.push(v.version)
    });
    const v1 = list.querySelector('[data-version="1"]')!;
    const v2 = list.querySelector('[data-version="2"]')!;
    expect(v1.querySelector('.jp-EasyTensor-diffButton')).toBeNull();
    expect(v2.querySelector('.jp-EasyTensor-diffButton')?.textContent).toBe(
      'Diff v1'
    );
    expect(v2.querySelector('.jp-EasyTensor-openCell')).toBeNull();
    (v1.querySelector('.jp-EasyTensor-openCell') as HTMLButtonElement).click();
    expect(opened).toEqual([1]);
  });
});
