import { CurlMode } from './curl';
import { IModel, InputKind, IModelVersion } from './types';

export type InputMode = CurlMode;

export const INPUT_MODES: { value: InputMode; label: string }[] = [
  { value: 'text', label: 'Text' },
  { value: 'json', label: 'JSON' },
  { value: 'file', label: 'File' }
];

export function defaultMode(kind: InputKind | undefined): InputMode {
  switch (kind) {
    case 'text':
      return 'text';
    case 'bytes':
    case 'image':
      return 'file';
    default:
      return 'json';
  }
}

export function defaultVersion(model: IModel): IModelVersion | undefined {
  return model.versions.find(v => v.version === model.default_version);
}

/**
 * JSON mode takes either a whole `{"instances": [...]}` body or one bare
 * instance, so pasting a request from elsewhere works as well as typing `"hi"`.
 */
export function parseJsonInput(text: string): unknown[] {
  if (!text.trim()) {
    throw new Error('Type a JSON value to send, e.g. [1.0, 2.0] or "hello".');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`The input is not valid JSON: ${reason}`);
  }
  if (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Array.isArray((value as { instances?: unknown }).instances)
  ) {
    return (value as { instances: unknown[] }).instances;
  }
  return [value];
}

/** The content type a file is sent with: images keep theirs, the rest is raw bytes. */
export function fileContentType(file: { type: string }): string {
  return file.type.startsWith('image/')
    ? file.type
    : 'application/octet-stream';
}
