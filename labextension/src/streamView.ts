import { IEasyTensorApi } from './api';
import { h } from './dom';
import { formatLatency, formatPredictions } from './format';
import { joinChunks } from './stream';
import { PredictInput } from './types';

function statusText(
  chunks: number,
  firstChunkMs: number | null,
  rate: number | null | undefined,
  version: number | undefined
): string {
  const parts = [`${chunks} chunk${chunks === 1 ? '' : 's'}`];
  if (firstChunkMs !== null) {
    parts.push(`first chunk ${formatLatency(firstChunkMs)}`);
  }
  if (typeof rate === 'number') {
    parts.push(`${rate.toFixed(1)} chunks/s`);
  }
  if (typeof version === 'number') {
    parts.push(`v${version}`);
  }
  return parts.join(' · ');
}

/**
 * Streams a query into `slot`: the answer grows chunk by chunk, with the time to the first
 * chunk and, once done, the chunks per second and the version that answered.
 */
export async function streamInto(
  api: IEasyTensorApi,
  id: string,
  input: PredictInput,
  version: number | undefined,
  slot: HTMLElement
): Promise<void> {
  const status = h('div', {
    className: 'jp-EasyTensor-latency jp-EasyTensor-streamStatus',
    text: 'Waiting for the first chunk…'
  });
  const answer = h('pre', { className: 'jp-EasyTensor-answer' });
  slot.replaceChildren(status, answer);
  const started = performance.now();
  const chunks: unknown[] = [];
  let first: number | null = null;
  const result = await api.predictStream!(id, input, version, chunk => {
    first = first ?? performance.now() - started;
    chunks.push(chunk);
    answer.textContent = formatPredictions([joinChunks(chunks)], 1);
    status.textContent = statusText(chunks.length, first, null, undefined);
  });
  answer.textContent = formatPredictions([joinChunks(result.chunks)], 1);
  status.textContent = statusText(
    result.chunks.length,
    result.firstChunkMs,
    result.done.chunks_per_s,
    result.done.version
  );
  status.setAttribute('data-chunks', String(result.chunks.length));
  if (result.firstChunkMs !== null) {
    status.setAttribute('data-first-ms', result.firstChunkMs.toFixed(1));
  }
}
