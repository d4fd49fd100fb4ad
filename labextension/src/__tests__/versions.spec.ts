import { environmentText } from '../versions';
import { version } from './fixtures';

describe('environmentText', () => {
  it('lists the pins and where the version runs', () => {
    const v = version(2, {
      requirements: ['scikit-learn==1.9.1', 'regex==2026.1.1'],
      environment: 'ready'
    });
    expect(environmentText(v)).toBe(
      'scikit-learn==1.9.1, regex==2026.1.1 · runs in its own environment'
    );
  });

  it("says so when a version has no pins and runs in the server's environment", () => {
    expect(environmentText(version(1))).toBe(
      "no pins beyond torch · runs in the server's environment"
    );
  });

  it('shows a Python or torch difference as a warning', () => {
    const v = version(4, {
      warnings: ['the notebook ran torch 2.5.1; the server runs torch 2.13.0']
    });
    expect(environmentText(v)).toContain(
      'warning: the notebook ran torch 2.5.1; the server runs torch 2.13.0'
    );
  });

  it('names a version whose requirements the server lacks', () => {
    const v = version(3, {
      requirements: ['etdemo==1'],
      environment: 'missing'
    });
    expect(environmentText(v)).toContain('the server lacks its requirements');
  });
});
