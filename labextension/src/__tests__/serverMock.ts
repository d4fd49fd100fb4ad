/**
 * Stand-in for the network boundary: what ServerConnection.makeRequest
 * would have received and what it answers.
 */
export interface ISentRequest {
  url: string;
  init: RequestInit;
}

export function fakeResponse(
  status: number,
  body: unknown = '',
  statusText = ''
): Response {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return {
    ok: status >= 200 && status < 300,
    status,
    statusText,
    text: async () => text
  } as Response;
}

export const SETTINGS = { baseUrl: 'http://localhost:8888/base/' } as any;
