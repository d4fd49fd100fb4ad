/**
 * A failed call to the EasyTensor REST API, carrying what the server said so
 * the panel can show it instead of a bare "request failed".
 */
export class EasyTensorError extends Error {
  constructor(
    message: string,
    /** HTTP status, or null when no response came back at all. */
    readonly status: number | null = null,
    readonly statusText: string = '',
    readonly code: string | null = null,
    readonly detail: unknown = null
  ) {
    super(message);
    this.name = 'EasyTensorError';
  }
}

const MAX_RAW_BODY = 300;

/** Builds an error from a non-2xx response body of any shape. */
export function parseErrorResponse(
  status: number,
  statusText: string,
  body: string
): EasyTensorError {
  const json = tryParseJson(body);
  if (isRecord(json)) {
    const inner = json.error;
    if (isRecord(inner) && typeof inner.message === 'string') {
      const code = typeof inner.code === 'string' ? inner.code : null;
      return new EasyTensorError(
        inner.message,
        status,
        statusText,
        code,
        inner.detail ?? null
      );
    }
    if (typeof inner === 'string' && inner) {
      return new EasyTensorError(inner, status, statusText);
    }
    // jupyter_server's own JSON errors (e.g. 403 from its auth layer).
    if (typeof json.message === 'string' && json.message) {
      return new EasyTensorError(json.message, status, statusText);
    }
  }
  const text = body.trim();
  if (text && !text.startsWith('<') && json === undefined) {
    const clipped =
      text.length > MAX_RAW_BODY ? text.slice(0, MAX_RAW_BODY) + '…' : text;
    return new EasyTensorError(clipped, status, statusText);
  }
  return new EasyTensorError(fallbackMessage(status), status, statusText);
}

function fallbackMessage(status: number): string {
  switch (status) {
    case 404:
      return 'The EasyTensor server extension did not answer. Is easytensor_jupyter installed and enabled in this Jupyter server?';
    case 401:
    case 403:
      return 'Jupyter refused the request. The session may have expired: reload the page.';
    case 502:
    case 503:
    case 504:
      return 'The EasyTensor inference server is not reachable.';
    default:
      return 'The request failed.';
  }
}

/** One-line, human readable summary of any thrown value. */
export function describeError(error: unknown): string {
  if (error instanceof EasyTensorError) {
    if (error.status === null) {
      return `Network error: ${error.message}`;
    }
    const head = [`Error ${error.status}`, error.statusText]
      .filter(Boolean)
      .join(' ');
    const code = error.code ? ` (${error.code})` : '';
    return `${head}${code}: ${error.message}`;
  }
  if (error instanceof Error) {
    return error.message || error.name;
  }
  return String(error);
}

/** The server's `detail` rendered as text, or null when there is none worth showing. */
export function describeDetail(error: unknown): string | null {
  if (!(error instanceof EasyTensorError)) {
    return null;
  }
  const { detail } = error;
  if (detail === null || detail === undefined || detail === '') {
    return null;
  }
  if (typeof detail === 'string') {
    return detail;
  }
  // A model's traceback reads as text, not as an escaped JSON string.
  const traceback = (detail as { traceback?: unknown }).traceback;
  if (typeof traceback === 'string' && traceback) {
    return traceback;
  }
  try {
    return JSON.stringify(detail, null, 2);
  } catch {
    return String(detail);
  }
}

function tryParseJson(text: string): unknown {
  if (!text) {
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
