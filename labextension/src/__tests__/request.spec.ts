import { EasyTensorError } from '../errors';
import { requestAPI } from '../request';
import { fakeResponse, SETTINGS } from './serverMock';

const mockMakeRequest = jest.fn();

jest.mock('@jupyterlab/services', () => ({
  ServerConnection: {
    makeSettings: () => ({ baseUrl: 'http://localhost:8888/default/' }),
    makeRequest: (...args: unknown[]) => mockMakeRequest(...args)
  }
}));

beforeEach(() => mockMakeRequest.mockReset());

async function failure(call: Promise<unknown>): Promise<EasyTensorError> {
  const error = await call.then(
    () => null,
    (e: unknown) => e
  );
  expect(error).toBeInstanceOf(EasyTensorError);
  return error as EasyTensorError;
}

describe('requestAPI', () => {
  it('joins the URL under easytensor/api and passes init and settings', async () => {
    mockMakeRequest.mockResolvedValue(fakeResponse(200, { models: [] }));
    const init = { method: 'GET' };
    const data = await requestAPI('models', init, SETTINGS);
    expect(data).toEqual({ models: [] });
    expect(mockMakeRequest).toHaveBeenCalledWith(
      'http://localhost:8888/base/easytensor/api/models',
      init,
      SETTINGS
    );
  });

  it("uses Jupyter's default settings when none are given", async () => {
    mockMakeRequest.mockResolvedValue(fakeResponse(200, {}));
    await requestAPI('status');
    expect(mockMakeRequest.mock.calls[0][0]).toBe(
      'http://localhost:8888/default/easytensor/api/status'
    );
  });

  it('resolves to undefined for an empty 204 body', async () => {
    mockMakeRequest.mockResolvedValue(fakeResponse(204));
    await expect(requestAPI('models/x', {}, SETTINGS)).resolves.toBeUndefined();
  });

  it("rejects with the server's error envelope", async () => {
    mockMakeRequest.mockResolvedValue(
      fakeResponse(
        409,
        { error: { code: 'default_version', message: 'Cannot delete v2' } },
        'Conflict'
      )
    );
    const error = await failure(
      requestAPI('models/x/versions/2', {}, SETTINGS)
    );
    expect(error).toBeInstanceOf(EasyTensorError);
    expect(error.status).toBe(409);
    expect(error.code).toBe('default_version');
    expect(error.message).toBe('Cannot delete v2');
  });

  it('turns a failed fetch into a network error', async () => {
    mockMakeRequest.mockRejectedValue(new TypeError('Failed to fetch'));
    const error = await failure(requestAPI('models', {}, SETTINGS));
    expect(error).toBeInstanceOf(EasyTensorError);
    expect(error.status).toBeNull();
    expect(error.message).toBe('Failed to fetch');
  });

  it('rejects a 200 whose body is not JSON', async () => {
    mockMakeRequest.mockResolvedValue(fakeResponse(200, '<html></html>'));
    await expect(requestAPI('models', {}, SETTINGS)).rejects.toThrow(
      /not JSON/
    );
  });
});
