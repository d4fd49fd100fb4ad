import { defaultMode, fileContentType, parseJsonInput } from '../input';

describe('defaultMode', () => {
  it('follows the input kind of the model', () => {
    expect(defaultMode('text')).toBe('text');
    expect(defaultMode('bytes')).toBe('file');
    expect(defaultMode('image')).toBe('file');
    expect(defaultMode('json')).toBe('json');
    expect(defaultMode('unknown')).toBe('json');
    expect(defaultMode(undefined)).toBe('json');
  });
});

describe('parseJsonInput', () => {
  it('wraps a bare value as one instance', () => {
    expect(parseJsonInput('[5.1, 3.5]')).toEqual([[5.1, 3.5]]);
    expect(parseJsonInput('"hello"')).toEqual(['hello']);
    expect(parseJsonInput('{"a": 1}')).toEqual([{ a: 1 }]);
  });

  it('takes a whole request body as is', () => {
    expect(parseJsonInput('{"instances": [1, 2]}')).toEqual([1, 2]);
  });

  it('explains invalid or empty input', () => {
    expect(() => parseJsonInput('{oops')).toThrow(/not valid JSON/);
    expect(() => parseJsonInput('  ')).toThrow(/Type a JSON value/);
  });
});

describe('fileContentType', () => {
  it('keeps image types and sends the rest as bytes', () => {
    expect(fileContentType({ type: 'image/png' })).toBe('image/png');
    expect(fileContentType({ type: 'text/csv' })).toBe(
      'application/octet-stream'
    );
    expect(fileContentType({ type: '' })).toBe('application/octet-stream');
  });
});
