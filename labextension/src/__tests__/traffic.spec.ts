import { describeShadow, describeSplit, ITrafficPolicy } from '../traffic';

const POLICY: ITrafficPolicy = {
  default_version: 2,
  split: null,
  sticky: false,
  shadow: null,
  shadow_stats: null,
  key_header: 'X-EasyTensor-Key'
};

describe('describeSplit', () => {
  it('names the default when there is no split', () => {
    expect(describeSplit(POLICY)).toBe('All traffic to v2 (the default)');
    expect(describeSplit({ ...POLICY, split: {} })).toBe(
      'All traffic to v2 (the default)'
    );
  });

  it('gives each version its share, in version order', () => {
    const split = { '10': 1, '3': 3 };
    expect(describeSplit({ ...POLICY, split })).toBe('Split: v3 75% · v10 25%');
    expect(describeSplit({ ...POLICY, split, sticky: true })).toBe(
      'Split: v3 75% · v10 25% (sticky by X-EasyTensor-Key)'
    );
  });
});

describe('describeShadow', () => {
  it('says nothing without a shadow, and waits for its first answers', () => {
    expect(describeShadow(POLICY)).toBeNull();
    expect(describeShadow({ ...POLICY, shadow: 3 })).toBe(
      'Shadow v3: no answers yet'
    );
  });

  it('shows the agreement rate with what was compared and dropped', () => {
    const shadow_stats = {
      compared: 40,
      agreed: 38,
      errors: 0,
      agreement: 0.95,
      dropped: 7
    };
    expect(describeShadow({ ...POLICY, shadow: 3, shadow_stats })).toBe(
      'Shadow v3: 95.0% agree (40 compared, 7 dropped)'
    );
  });
});
