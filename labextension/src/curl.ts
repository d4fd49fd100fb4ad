export type CurlMode = 'json' | 'text' | 'file';

export interface ICurlOptions {
  endpoint: string;
  mode: CurlMode;
  /** json: the whole request body; text: the raw text. Placeholder if absent. */
  body?: string;
  /** file mode: the file to send, `FILE` if none is chosen yet. */
  fileName?: string;
  /** file mode: defaults to application/octet-stream. */
  contentType?: string;
}

export const TOKEN_VARIABLE = 'EASYTENSOR_TOKEN';

const JSON_PLACEHOLDER = '{"instances": [...]}';
const TEXT_PLACEHOLDER = 'your text';
const MIME_TYPE = /^[A-Za-z0-9][\w.+-]*\/[\w.+-]+$/;
const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quotes a value as one word for a POSIX shell; plain words stay readable. */
export function shellQuote(value: string): string {
  if (SAFE_WORD.test(value)) {
    return value;
  }
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function buildCurl(options: ICurlOptions): string {
  const lines = [
    `curl -X POST ${shellQuote(options.endpoint)}`,
    `-H "Authorization: Bearer $${TOKEN_VARIABLE}"`
  ];
  switch (options.mode) {
    case 'json':
      lines.push(
        '-H "Content-Type: application/json"',
        `-d ${shellQuote(options.body || JSON_PLACEHOLDER)}`
      );
      break;
    case 'text': {
      const text = options.body || TEXT_PLACEHOLDER;
      // --data-binary would read a file for text starting with "@".
      const flag = text.startsWith('@') ? '--data-raw' : '--data-binary';
      lines.push(
        '-H "Content-Type: text/plain"',
        `${flag} ${shellQuote(text)}`
      );
      break;
    }
    case 'file': {
      const type = MIME_TYPE.test(options.contentType ?? '')
        ? options.contentType
        : 'application/octet-stream';
      lines.push(
        `--data-binary ${shellQuote('@' + (options.fileName || 'FILE'))}`,
        `-H "Content-Type: ${type}"`
      );
      break;
    }
  }
  return lines.join(' \\\n  ');
}
