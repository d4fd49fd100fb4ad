import {
  formatBytes,
  formatDate,
  formatLatency,
  formatPredictions,
  formatScaling,
  plural
} from '../format';

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [123456, '121 KiB'],
    [61728, '60.3 KiB'],
    [5 * 1024 * 1024, '5.0 MiB'],
    [3.5 * 1024 ** 3, '3.5 GiB']
  ])('%d bytes -> %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  it('shows a dash for missing sizes', () => {
    expect(formatBytes(null)).toBe('—');
    expect(formatBytes(undefined)).toBe('—');
    expect(formatBytes(NaN)).toBe('—');
  });
});

describe('formatLatency', () => {
  it.each([
    [0.42, '0.42 ms'],
    [2.1, '2.1 ms'],
    [12.345, '12.3 ms'],
    [250.4, '250 ms'],
    [1234, '1.23 s']
  ])('%d ms -> %s', (ms, text) => {
    expect(formatLatency(ms)).toBe(text);
  });

  it('shows a dash when there was no query yet', () => {
    expect(formatLatency(null)).toBe('—');
    expect(formatLatency(undefined)).toBe('—');
    expect(formatLatency(-1)).toBe('—');
  });
});

describe('formatDate', () => {
  it('formats to the minute', () => {
    expect(formatDate('2026-11-23T21:00:00')).toBe('2026-11-23 21:00');
  });

  it('passes through what does not parse', () => {
    expect(formatDate('yesterday')).toBe('yesterday');
    expect(formatDate(null)).toBe('—');
  });
});

describe('plural', () => {
  it('adds an s except for one', () => {
    expect(plural(1, 'version')).toBe('1 version');
    expect(plural(0, 'version')).toBe('0 versions');
    expect(plural(3, 'version')).toBe('3 versions');
  });
});

describe('formatPredictions', () => {
  it('unwraps the single answer of a single instance', () => {
    expect(formatPredictions(['sports'], 1)).toBe('sports');
    expect(formatPredictions([{ label: 'sports', score: 0.9 }], 1)).toBe(
      '{\n  "label": "sports",\n  "score": 0.9\n}'
    );
  });

  it('keeps the list for several instances', () => {
    expect(formatPredictions([1, 2], 2)).toBe('[\n  1,\n  2\n]');
  });
});

describe('formatScaling', () => {
  it('describes a fixed count in the words of the CLI', () => {
    expect(
      formatScaling({
        scaling: { replicas: 2, autoscaling: null },
        backend: 'local',
        replicas_running: 1
      })
    ).toBe('2 replicas (fixed) · 1 running · local');
    expect(
      formatScaling({
        scaling: { replicas: 1, autoscaling: null },
        backend: 'local',
        replicas_running: 0
      })
    ).toBe('1 replica (fixed) · 0 running · local');
  });

  it('describes autoscaling bounds and target', () => {
    expect(
      formatScaling({
        scaling: {
          replicas: null,
          autoscaling: {
            min_replicas: 0,
            max_replicas: 4,
            target_ongoing_requests: 2.0
          }
        },
        backend: 'ray',
        replicas_running: 3
      })
    ).toBe('autoscaling 0 to 4 replicas, target 2 in flight · 3 running · ray');
    expect(
      formatScaling({
        scaling: {
          replicas: null,
          autoscaling: {
            min_replicas: 1,
            max_replicas: 8,
            target_ongoing_requests: 1.5
          }
        }
      })
    ).toBe('autoscaling 1 to 8 replicas, target 1.5 in flight');
  });

  it('leaves out what an older server does not send', () => {
    expect(formatScaling({})).toBeNull();
    expect(formatScaling({ replicas_running: 2 })).toBe('2 running');
    expect(formatScaling({ backend: 'ray' })).toBe('ray');
  });
});
