import { buildCurl, shellQuote } from '../curl';

describe('shellQuote', () => {
  it('leaves plain words alone', () => {
    expect(shellQuote('http://127.0.0.1:8765/v1/models/a-1/predict')).toBe(
      'http://127.0.0.1:8765/v1/models/a-1/predict'
    );
  });

  it('single-quotes words with spaces or shell characters', () => {
    expect(shellQuote('hello world')).toBe("'hello world'");
    expect(shellQuote('$HOME')).toBe("'$HOME'");
    expect(shellQuote('a;b|c&d`e`')).toBe("'a;b|c&d`e`'");
    expect(shellQuote('http://h/p?version=2')).toBe("'http://h/p?version=2'");
  });

  it('escapes embedded single quotes', () => {
    expect(shellQuote("it's")).toBe("'it'\\''s'");
  });

  it('quotes the empty string', () => {
    expect(shellQuote('')).toBe("''");
  });

  it('keeps newlines inside the quotes', () => {
    expect(shellQuote('a\nb')).toBe("'a\nb'");
  });
});

const ENDPOINT = 'http://127.0.0.1:8765/v1/models/news-3fa2b1/predict';

describe('buildCurl', () => {
  it('builds a JSON request with the bearer token variable', () => {
    const cmd = buildCurl({
      endpoint: ENDPOINT,
      mode: 'json',
      body: '{"instances":["it\'s sunny"]}'
    });
    expect(cmd).toBe(
      [
        `curl -X POST ${ENDPOINT}`,
        '-H "Authorization: Bearer $EASYTENSOR_TOKEN"',
        '-H "Content-Type: application/json"',
        `-d '{"instances":["it'\\''s sunny"]}'`
      ].join(' \\\n  ')
    );
  });

  it('uses a placeholder body when there is no input yet', () => {
    const cmd = buildCurl({ endpoint: ENDPOINT, mode: 'json' });
    expect(cmd).toContain(`-d '{"instances": [...]}'`);
  });

  it('sends text as text/plain raw data', () => {
    const cmd = buildCurl({
      endpoint: ENDPOINT,
      mode: 'text',
      body: 'Stocks rally'
    });
    expect(cmd).toContain('-H "Content-Type: text/plain"');
    expect(cmd).toContain("--data-binary 'Stocks rally'");
  });

  it('does not let text starting with @ read a file', () => {
    const cmd = buildCurl({
      endpoint: ENDPOINT,
      mode: 'text',
      body: '@/etc/passwd'
    });
    expect(cmd).toContain('--data-raw @/etc/passwd');
    expect(cmd).not.toContain('--data-binary');
  });

  it('uploads a file with its type or as octet-stream', () => {
    expect(buildCurl({ endpoint: ENDPOINT, mode: 'file' })).toContain(
      '--data-binary @FILE \\\n  -H "Content-Type: application/octet-stream"'
    );
    const cmd = buildCurl({
      endpoint: ENDPOINT,
      mode: 'file',
      fileName: 'my cat.png',
      contentType: 'image/png'
    });
    expect(cmd).toContain("--data-binary '@my cat.png'");
    expect(cmd).toContain('-H "Content-Type: image/png"');
  });

  it('refuses a content type that could break out of the quotes', () => {
    const cmd = buildCurl({
      endpoint: ENDPOINT,
      mode: 'file',
      contentType: 'image/png"; rm -rf ~; "'
    });
    expect(cmd).toContain('-H "Content-Type: application/octet-stream"');
  });

  it('quotes an endpoint that has a query string', () => {
    const cmd = buildCurl({ endpoint: `${ENDPOINT}?version=1`, mode: 'json' });
    expect(cmd.startsWith(`curl -X POST '${ENDPOINT}?version=1'`)).toBe(true);
  });
});
