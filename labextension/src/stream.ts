import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { EasyTensorError, parseErrorResponse } from './errors';

/** The server's last line of a stream: version and timings. */
export interface IStreamDone {
  model_id?: string;
  version?: number;
  chunks?: number;
  first_chunk_ms?: number | null;
  latency_ms?: number;
  chunks_per_s?: number | null;
}

/** What the browser saw of a stream: every chunk, the final line and its own timings. */
export interface IStreamResult {
  chunks: unknown[];
  done: IStreamDone;
  firstChunkMs: number | null;
  roundTripMs: number;
}

/** Strings concatenated, otherwise the list of chunks (as the parity check joins them). */
export function joinChunks(chunks: unknown[]): unknown {
  if (chunks.length > 0 && chunks.every(c => typeof c === 'string')) {
    return (chunks as string[]).join('');
  }
  return chunks;
}

/** Handles one NDJSON line; returns the final line once it has come. */
function readLine(
  line: string,
  chunks: unknown[],
  onChunk: (chunk: unknown, index: number) => void
): IStreamDone | undefined {
  const value = JSON.parse(line) as Record<string, unknown>;
  if ('chunk' in value) {
    chunks.push(value.chunk);
    onChunk(value.chunk, chunks.length - 1);
    return undefined;
  }
  if ('error' in value) {
    const error = (value.error ?? {}) as Record<string, unknown>;
    throw new EasyTensorError(
      String(error.message ?? 'The stream failed.'),
      200,
      'OK',
      String(error.code ?? 'error'),
      error.detail
    );
  }
  return value as IStreamDone;
}

/**
 * Streams a prediction through the server extension, which passes the inference server's
 * NDJSON lines through as they come; `onChunk` hears each chunk on arrival.
 */
export async function streamRequest(
  endPoint: string,
  body: BodyInit,
  contentType: string,
  onChunk: (chunk: unknown, index: number) => void,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings(),
  now: () => number = () => performance.now()
): Promise<IStreamResult> {
  const url = URLExt.join(settings.baseUrl, 'easytensor', 'api', endPoint);
  const started = now();
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      url,
      {
        method: 'POST',
        headers: {
          'Content-Type': contentType,
          Accept: 'application/x-ndjson'
        },
        body
      },
      settings
    );
  } catch (error) {
    throw new EasyTensorError(
      error instanceof Error ? error.message : String(error)
    );
  }
  if (!response.ok || !response.body) {
    const text = await response.text();
    throw parseErrorResponse(response.status, response.statusText, text);
  }
  const chunks: unknown[] = [];
  let firstChunkMs: number | null = null;
  const seen = (chunk: unknown, index: number): void => {
    if (firstChunkMs === null) {
      firstChunkMs = now() - started;
    }
    onChunk(chunk, index);
  };
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let rest = '';
  let done: IStreamDone | undefined;
  try {
    while (done === undefined) {
      const { value, done: ended } = await reader.read();
      if (ended) {
        break;
      }
      rest += decoder.decode(value, { stream: true });
      const lines = rest.split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() && done === undefined) {
          done = readLine(line, chunks, seen);
        }
      }
    }
  } finally {
    void reader.cancel().catch(() => undefined);
  }
  if (done === undefined) {
    throw new EasyTensorError(
      'The stream ended without its final line; the server may have stopped.'
    );
  }
  return { chunks, done, firstChunkMs, roundTripMs: now() - started };
}
