import { IModel } from './types';

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) {
    return '—';
  }
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) {
    return `${value} B`;
  }
  const digits = value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

export function formatLatency(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) {
    return '—';
  }
  if (ms >= 1000) {
    return `${(ms / 1000).toFixed(2)} s`;
  }
  if (ms >= 100) {
    return `${Math.round(ms)} ms`;
  }
  if (ms >= 1) {
    return `${ms.toFixed(1)} ms`;
  }
  return `${ms.toFixed(2)} ms`;
}

/** Local date and time to the minute; the raw string if it does not parse. */
export function formatDate(iso: string | null | undefined): string {
  if (!iso) {
    return '—';
  }
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) {
    return iso;
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/**
 * Pretty JSON of the predictions. A single instance's answer is shown on its
 * own, since wrapping it in a one-element list only adds noise.
 */
export function formatPredictions(
  predictions: unknown[],
  instanceCount: number
): string {
  const shown =
    instanceCount === 1 && predictions.length === 1
      ? predictions[0]
      : predictions;
  if (typeof shown === 'string') {
    return shown;
  }
  const text = JSON.stringify(shown, null, 2);
  return text === undefined ? String(shown) : text;
}

/**
 * The model's scaling in the CLI's words (`easytensor models scale`), so
 * both read the same. Null when an older server sends none of the fields.
 */
export function formatScaling(
  model: Pick<IModel, 'scaling' | 'backend' | 'replicas_running'>
): string | null {
  const parts: string[] = [];
  const auto = model.scaling?.autoscaling;
  const fixed = model.scaling?.replicas;
  if (auto) {
    parts.push(
      `autoscaling ${auto.min_replicas} to ${auto.max_replicas} replicas, ` +
        `target ${auto.target_ongoing_requests} in flight`
    );
  } else if (typeof fixed === 'number') {
    parts.push(`${plural(fixed, 'replica')} (fixed)`);
  }
  if (typeof model.replicas_running === 'number') {
    parts.push(`${model.replicas_running} running`);
  }
  if (model.backend) {
    parts.push(model.backend);
  }
  return parts.length ? parts.join(' · ') : null;
}
