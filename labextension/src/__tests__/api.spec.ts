import { EasyTensorClient, predictBody } from '../api';
import { model } from './fixtures';
import { fakeResponse, SETTINGS } from './serverMock';

const mockMakeRequest = jest.fn();

jest.mock('@jupyterlab/services', () => ({
  ServerConnection: {
    makeSettings: () => ({ baseUrl: 'http://unused/' }),
    makeRequest: (...args: unknown[]) => mockMakeRequest(...args)
  }
}));

const API = 'http://localhost:8888/base/easytensor/api/';

function lastCall(): { url: string; init: RequestInit } {
  const calls = mockMakeRequest.mock.calls;
  const [url, init] = calls[calls.length - 1];
  return { url, init };
}

describe('EasyTensorClient', () => {
  let ticks: number[];
  let client: EasyTensorClient;

  beforeEach(() => {
    mockMakeRequest.mockReset();
    ticks = [100, 112.5];
    client = new EasyTensorClient(SETTINGS, () => ticks.shift() ?? 0);
  });

  it('lists models', async () => {
    mockMakeRequest.mockResolvedValue(fakeResponse(200, { models: [model()] }));
    const models = await client.listModels();
    expect(models.map(m => m.id)).toEqual(['news-classifier-3fa2b1']);
    expect(lastCall().url).toBe(API + 'models');
  });

  it('reads the server status', async () => {
    const status = {
      url: 'http://127.0.0.1:8765',
      connected: true,
      embedded: true,
      version: '0.1.0',
      error: null
    };
    mockMakeRequest.mockResolvedValue(fakeResponse(200, status));
    await expect(client.status()).resolves.toEqual(status);
    expect(lastCall().url).toBe(API + 'status');
  });

  it('escapes model ids in paths', async () => {
    mockMakeRequest.mockResolvedValue(fakeResponse(200, model()));
    await client.getModel('a b/c');
    expect(lastCall().url).toBe(API + 'models/a%20b%2Fc');
  });

  it('deletes a model and a version', async () => {
    mockMakeRequest.mockResolvedValue(fakeResponse(204));
    await client.deleteModel('m1');
    expect(lastCall()).toEqual({
      url: API + 'models/m1',
      init: { method: 'DELETE' }
    });
    await client.deleteVersion('m1', 3);
    expect(lastCall().url).toBe(API + 'models/m1/versions/3');
    expect(lastCall().init.method).toBe('DELETE');
  });

  it('sets the default version with a JSON body', async () => {
    mockMakeRequest.mockResolvedValue(
      fakeResponse(200, model({ default_version: 1 }))
    );
    const updated = await client.setDefaultVersion('m1', 1);
    expect(updated.default_version).toBe(1);
    const { url, init } = lastCall();
    expect(url).toBe(API + 'models/m1/default');
    expect(init.method).toBe('PUT');
    expect(init.headers).toEqual({ 'Content-Type': 'application/json' });
    expect(JSON.parse(init.body as string)).toEqual({ version: 1 });
  });

  it('predicts with JSON instances and measures the round trip', async () => {
    mockMakeRequest.mockResolvedValue(
      fakeResponse(200, {
        predictions: ['sports'],
        model_id: 'm1',
        version: 2,
        latency_ms: 3.2
      })
    );
    const result = await client.predict('m1', {
      mode: 'json',
      instances: ['Match report']
    });
    expect(result.roundTripMs).toBe(12.5);
    expect(result.response.predictions).toEqual(['sports']);
    const { url, init } = lastCall();
    expect(url).toBe(API + 'models/m1/predict');
    expect(init.method).toBe('POST');
    expect(init.headers).toEqual({ 'Content-Type': 'application/json' });
    expect(init.body).toBe('{"instances":["Match report"]}');
  });

  it('predicts a pinned version with raw text', async () => {
    mockMakeRequest.mockResolvedValue(
      fakeResponse(200, { predictions: [1], model_id: 'm1', version: 1 })
    );
    await client.predict('m1', { mode: 'text', text: 'hello' }, 1);
    const { url, init } = lastCall();
    expect(url).toBe(API + 'models/m1/predict?version=1');
    expect(init.headers).toEqual({ 'Content-Type': 'text/plain' });
    expect(init.body).toBe('hello');
  });

  it('manages tokens', async () => {
    mockMakeRequest.mockResolvedValueOnce(
      fakeResponse(200, {
        tokens: [
          { id: 't1', created_at: 'x', revoked: false, last_used_at: null }
        ]
      })
    );
    expect((await client.listTokens('m1')).map(t => t.id)).toEqual(['t1']);
    expect(lastCall().url).toBe(API + 'models/m1/tokens');

    mockMakeRequest.mockResolvedValueOnce(
      fakeResponse(201, { id: 't2', token: 'et_q_secret' })
    );
    expect((await client.createToken('m1')).token).toBe('et_q_secret');
    expect(lastCall().init.method).toBe('POST');

    mockMakeRequest.mockResolvedValueOnce(fakeResponse(204));
    await client.revokeToken('m1', 't2');
    expect(lastCall().url).toBe(API + 'models/m1/tokens/t2');
    expect(lastCall().init.method).toBe('DELETE');
  });

  it('propagates server errors', async () => {
    mockMakeRequest.mockResolvedValue(
      fakeResponse(
        422,
        { error: { code: 'bad_input', message: 'Expected text' } },
        'Unprocessable Entity'
      )
    );
    await expect(
      client.predict('m1', { mode: 'json', instances: [1] })
    ).rejects.toMatchObject({ status: 422, code: 'bad_input' });
  });
});

describe('predictBody', () => {
  it('sends a file with its own content type', () => {
    const file = new Blob(['abc']);
    expect(
      predictBody({ mode: 'file', file, contentType: 'image/png' })
    ).toEqual({ body: file, contentType: 'image/png' });
    expect(predictBody({ mode: 'file', file, contentType: '' })).toEqual({
      body: file,
      contentType: 'application/octet-stream'
    });
  });
});
