import { TextDecoder as NodeDecoder, TextEncoder as NodeEncoder } from 'util';

import { EasyTensorError } from '../errors';
import { joinChunks, streamRequest } from '../stream';
import { SETTINGS } from './serverMock';

const mockMakeRequest = jest.fn();

jest.mock('@jupyterlab/services', () => ({
  ServerConnection: {
    makeSettings: () => ({ baseUrl: 'http://localhost:8888/default/' }),
    makeRequest: (...args: unknown[]) => mockMakeRequest(...args)
  }
}));

const globals = globalThis as unknown as Record<string, unknown>;
globals.TextDecoder = globals.TextDecoder ?? NodeDecoder;

/** A streamed body that arrives in the given pieces (split mid-line on purpose). */
function streamed(pieces: string[]): unknown {
  const encoder = new NodeEncoder();
  let at = 0;
  return {
    ok: true,
    status: 200,
    statusText: 'OK',
    body: {
      getReader: () => ({
        read: async () =>
          at < pieces.length
            ? { value: encoder.encode(pieces[at++]), done: false }
            : { value: undefined, done: true },
        cancel: async () => undefined
      })
    }
  };
}

beforeEach(() => mockMakeRequest.mockReset());

describe('streamRequest', () => {
  it('hands each chunk over as its line completes, then the final line', async () => {
    mockMakeRequest.mockResolvedValue(
      streamed([
        '{"chunk": "a"}\n{"chu',
        'nk": "b"}\n',
        '{"done": true, "version": 3, "chunks": 2, "chunks_per_s": 10}\n'
      ])
    );
    const seen: unknown[] = [];
    let clock = 0;
    const result = await streamRequest(
      'models/m/predict',
      '{}',
      'application/json',
      chunk => seen.push(chunk),
      SETTINGS,
      () => (clock += 5)
    );
    expect(seen).toEqual(['a', 'b']);
    expect(result.chunks).toEqual(['a', 'b']);
    expect(result.done.version).toBe(3);
    expect(result.firstChunkMs).toBe(5);
    const [url, init] = mockMakeRequest.mock.calls[0];
    expect(url).toBe(
      'http://localhost:8888/base/easytensor/api/models/m/predict'
    );
    expect(init.headers.Accept).toBe('application/x-ndjson');
  });

  it('rejects with the error line, after the chunks before it', async () => {
    mockMakeRequest.mockResolvedValue(
      streamed([
        '{"chunk": 1}\n',
        '{"error": {"code": "model_error", "message": "boom"}}\n'
      ])
    );
    const seen: unknown[] = [];
    const error = await streamRequest(
      'models/m/predict',
      '{}',
      'application/json',
      chunk => seen.push(chunk),
      SETTINGS
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EasyTensorError);
    expect((error as EasyTensorError).code).toBe('model_error');
    expect((error as EasyTensorError).message).toBe('boom');
    expect(seen).toEqual([1]);
  });

  it('says so when the stream ends without its final line', async () => {
    mockMakeRequest.mockResolvedValue(streamed(['{"chunk": 1}\n']));
    const error = await streamRequest(
      'x',
      '{}',
      'application/json',
      () => undefined,
      SETTINGS
    ).catch((e: unknown) => e);
    expect(String(error)).toContain('without its final line');
  });
});

describe('joinChunks', () => {
  it('concatenates strings and keeps other chunks as a list', () => {
    expect(joinChunks(['a', 'b'])).toBe('ab');
    expect(joinChunks([1, 'b'])).toEqual([1, 'b']);
    expect(joinChunks([])).toEqual([]);
  });
});
