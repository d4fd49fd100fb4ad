import {
  describeDetail,
  describeError,
  EasyTensorError,
  parseErrorResponse
} from '../errors';

describe('parseErrorResponse', () => {
  it('reads the EasyTensor error envelope', () => {
    const body = JSON.stringify({
      error: {
        code: 'model_not_found',
        message: "No model 'x'",
        detail: { id: 'x' }
      }
    });
    const error = parseErrorResponse(404, 'Not Found', body);
    expect(error).toBeInstanceOf(EasyTensorError);
    expect(error.status).toBe(404);
    expect(error.code).toBe('model_not_found');
    expect(error.message).toBe("No model 'x'");
    expect(error.detail).toEqual({ id: 'x' });
    expect(describeError(error)).toBe(
      "Error 404 Not Found (model_not_found): No model 'x'"
    );
    expect(describeDetail(error)).toBe('{\n  "id": "x"\n}');
  });

  it('reads jupyter_server JSON errors', () => {
    const error = parseErrorResponse(
      403,
      'Forbidden',
      '{"message": "XSRF cookie does not match", "reason": null}'
    );
    expect(describeError(error)).toBe(
      'Error 403 Forbidden: XSRF cookie does not match'
    );
  });

  it('explains an HTML 404 as a missing server extension', () => {
    const error = parseErrorResponse(
      404,
      'Not Found',
      '<html><body>404 : Not Found</body></html>'
    );
    expect(describeError(error)).toMatch(
      /^Error 404 Not Found: The EasyTensor server extension did not answer/
    );
    expect(describeDetail(error)).toBeNull();
  });

  it('shows a short plain text body as is', () => {
    const error = parseErrorResponse(500, '', 'boom');
    expect(describeError(error)).toBe('Error 500: boom');
  });

  it('clips a long plain text body', () => {
    const error = parseErrorResponse(500, '', 'x'.repeat(1000));
    expect(error.message.length).toBeLessThan(310);
  });

  it('falls back on the status for an empty body', () => {
    expect(describeError(parseErrorResponse(502, 'Bad Gateway', ''))).toBe(
      'Error 502 Bad Gateway: The EasyTensor inference server is not reachable.'
    );
    expect(describeError(parseErrorResponse(500, '', ''))).toBe(
      'Error 500: The request failed.'
    );
  });

  it('accepts a plain string error field', () => {
    const error = parseErrorResponse(400, '', '{"error": "bad input"}');
    expect(error.message).toBe('bad input');
  });
});

describe('describeError', () => {
  it('labels failures without a response as network errors', () => {
    expect(describeError(new EasyTensorError('Failed to fetch'))).toBe(
      'Network error: Failed to fetch'
    );
  });

  it('handles any thrown value', () => {
    expect(describeError(new Error('plain'))).toBe('plain');
    expect(describeError('text')).toBe('text');
    expect(describeDetail(new Error('plain'))).toBeNull();
  });

  it('shows a string detail as is', () => {
    const error = new EasyTensorError('m', 422, '', 'bad_input', 'line 1');
    expect(describeDetail(error)).toBe('line 1');
  });

  it('shows a model traceback as plain lines, not escaped JSON', () => {
    const detail = {
      exception: 'KeyError',
      traceback:
        'Traceback (most recent call last):\n  File "model.py"\nKeyError: \'x\'',
      index: 0
    };
    const error = new EasyTensorError('m', 422, '', 'model_error', detail);
    const text = describeDetail(error) ?? '';
    expect(text.split('\n')).toHaveLength(3);
    expect(text).not.toContain('\\n');
    expect(text).toContain("KeyError: 'x'");
  });
});
