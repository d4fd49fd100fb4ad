import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { EasyTensorError, parseErrorResponse } from './errors';

/**
 * Calls `<baseUrl>/easytensor/api/<endPoint>` through Jupyter's own
 * connection so the token and XSRF cookie are attached.
 *
 * Resolves to the parsed JSON body, or undefined for an empty body (204).
 * Rejects with an EasyTensorError that holds the server's message.
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'easytensor', 'api', endPoint);

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new EasyTensorError(
      error instanceof Error ? error.message : String(error)
    );
  }

  const body = await response.text();
  if (!response.ok) {
    throw parseErrorResponse(response.status, response.statusText, body);
  }
  if (!body) {
    return undefined as T;
  }
  try {
    return JSON.parse(body) as T;
  } catch {
    throw new EasyTensorError(
      'The server answered with something that is not JSON.',
      response.status,
      response.statusText
    );
  }
}
