import { IModel, IModelVersion } from '../types';

export function version(
  n: number,
  overrides: Partial<IModelVersion> = {}
): IModelVersion {
  return {
    version: n,
    created_at: '2026-11-23T21:00:00Z',
    size_bytes: 61728,
    class_name: 'TextClassificationModel',
    input_kind: 'text',
    status: 'idle',
    ...overrides
  };
}

export function model(overrides: Partial<IModel> = {}): IModel {
  return {
    id: 'news-classifier-3fa2b1',
    name: 'News classifier',
    default_version: 2,
    created_at: '2026-11-23T21:00:00Z',
    status: 'ready',
    size_bytes: 123456,
    endpoint: 'http://127.0.0.1:8765/v1/models/news-classifier-3fa2b1/predict',
    stats: { requests: 10, errors: 1, last_latency_ms: 2.1 },
    versions: [version(1), version(2, { status: 'ready' })],
    ...overrides
  };
}
