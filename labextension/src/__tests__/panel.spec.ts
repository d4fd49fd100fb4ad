import { Widget } from '@lumino/widgets';

import { IEasyTensorApi } from '../api';
import { EasyTensorError, parseErrorResponse } from '../errors';
import { EasyTensorPanel } from '../panel';
import { BUSY_LOOK_MS } from '../playground';
import { IUiServices } from '../services';
import { IModel } from '../types';
import { model, version } from './fixtures';

const ID = 'news-classifier-3fa2b1';

function fakeApi(models: IModel[] = [model()]): jest.Mocked<IEasyTensorApi> {
  return {
    status: jest.fn().mockResolvedValue({
      url: 'http://127.0.0.1:8765',
      connected: true,
      embedded: true,
      version: '0.1.0',
      error: null
    }),
    listModels: jest.fn().mockResolvedValue(models),
    getModel: jest.fn(),
    deleteModel: jest.fn().mockResolvedValue(undefined),
    deleteVersion: jest.fn().mockResolvedValue(undefined),
    setDefaultVersion: jest.fn(),
    predict: jest.fn(),
    listTokens: jest.fn().mockResolvedValue([]),
    createToken: jest.fn(),
    revokeToken: jest.fn()
  };
}

function setup(api = fakeApi(), confirmAnswer = true) {
  const services: IUiServices = {
    api,
    copy: jest.fn(),
    confirm: jest.fn().mockResolvedValue(confirmAnswer)
  };
  const panel = new EasyTensorPanel(services);
  Widget.attach(panel, document.body);
  const $ = <T extends Element = HTMLElement>(selector: string) =>
    panel.node.querySelector<T>(selector);
  const $$ = (selector: string) =>
    Array.from(panel.node.querySelectorAll<HTMLElement>(selector));
  return { api, services, panel, $, $$ };
}

/** Lets the promise chains started by a click settle. */
const flush = () => new Promise(resolve => setTimeout(resolve, 0));

afterEach(() => {
  document.body.innerHTML = '';
});

describe('EasyTensorPanel list', () => {
  it('has the id, caption and a refresh button', () => {
    const { panel, $ } = setup();
    expect(panel.id).toBe('easytensor-models');
    expect(panel.title.caption).toBe('EasyTensor models');
    expect($('.jp-EasyTensor-refresh')).not.toBeNull();
    panel.dispose();
  });

  it('renders one item per model with its facts', async () => {
    const other = model({
      id: 'iris-1',
      name: 'Iris',
      default_version: 1,
      status: 'loading',
      size_bytes: 2048,
      stats: { requests: 0, errors: 0, last_latency_ms: null },
      versions: [version(1, { input_kind: 'json' })]
    });
    const { panel, $, $$ } = setup(fakeApi([model(), other]));
    await panel.refresh();

    const items = $$('.jp-EasyTensor-modelItem');
    expect(items.map(i => i.dataset.modelId)).toEqual([ID, 'iris-1']);
    expect(items[0].textContent).toContain('News classifier');
    expect(items[0].textContent).toContain('ready');
    expect(
      items[0].querySelector('.jp-EasyTensor-modelMeta')!.textContent
    ).toBe('v2 · 2 versions · 121 KiB · last 2.1 ms');
    expect(
      items[1].querySelector('.jp-EasyTensor-modelMeta')!.textContent
    ).toBe('v1 · 1 version · 2.0 KiB · last —');
    expect($('.jp-EasyTensor-status')!.textContent).toBe(
      'http://127.0.0.1:8765 (embedded) · v0.1.0'
    );
    expect($('.jp-EasyTensor-error')).toBeNull();
    expect(panel.node.dataset.state).toBe('ready');
    panel.dispose();
  });

  it('tells how to deploy when there are no models', async () => {
    const { panel, $ } = setup(fakeApi([]));
    await panel.refresh();
    expect($('.jp-EasyTensor-empty')!.textContent).toContain(
      '%%easytensor_model NAME --instance VAR'
    );
    expect($('.jp-EasyTensor-modelItem')).toBeNull();
    panel.dispose();
  });

  it("shows the server's error with its status", async () => {
    const api = fakeApi();
    api.listModels.mockRejectedValue(
      new EasyTensorError(
        'Disk full',
        500,
        'Internal Server Error',
        'io_error',
        {
          path: '/tmp'
        }
      )
    );
    const { panel, $ } = setup(api);
    await panel.refresh();
    const error = $('.jp-EasyTensor-error')!;
    expect(error.textContent).toContain(
      'Could not load models: Error 500 Internal Server Error (io_error): Disk full'
    );
    expect(error.querySelector('details pre')!.textContent).toContain('/tmp');
    expect(panel.node.dataset.state).toBe('error');
    panel.dispose();
  });

  it('explains a missing server extension', async () => {
    const api = fakeApi();
    const missing = parseErrorResponse(404, 'Not Found', '<html>404</html>');
    api.listModels.mockRejectedValue(missing);
    api.status.mockRejectedValue(missing);
    const { panel, $ } = setup(api);
    await panel.refresh();
    expect($('.jp-EasyTensor-error')!.textContent).toMatch(
      /Error 404 Not Found: The EasyTensor server extension did not answer/
    );
    expect($('.jp-EasyTensor-status')!.textContent).toBe(
      'Server status unavailable'
    );
    expect($('.jp-EasyTensor-empty')).toBeNull();
    panel.dispose();
  });

  it('says when the inference server is not connected', async () => {
    const api = fakeApi();
    api.status.mockResolvedValue({
      url: null,
      connected: false,
      embedded: false,
      version: null,
      error: 'connection refused'
    });
    const { panel, $ } = setup(api);
    await panel.refresh();
    const line = $('.jp-EasyTensor-status')!;
    expect(line.textContent).toBe(
      'Inference server not connected: connection refused'
    );
    expect(line.classList).toContain('jp-mod-warn');
    panel.dispose();
  });

  it('keeps the last list on a transient error and clears the error after', async () => {
    const api = fakeApi();
    const { panel, $, $$ } = setup(api);
    await panel.refresh();
    api.listModels.mockRejectedValueOnce(new EasyTensorError('offline'));
    await panel.refresh();
    expect($$('.jp-EasyTensor-modelItem')).toHaveLength(1);
    expect($('.jp-EasyTensor-error')!.textContent).toContain(
      'Network error: offline'
    );
    await panel.refresh();
    expect($('.jp-EasyTensor-error')).toBeNull();
    panel.dispose();
  });

  it('reloads when shown and from the Refresh button', async () => {
    const api = fakeApi();
    const { panel, $ } = setup(api);
    panel.hide();
    panel.show();
    await flush();
    expect(api.listModels).toHaveBeenCalledTimes(1);
    $<HTMLButtonElement>('.jp-EasyTensor-refresh')!.click();
    await flush();
    expect(api.listModels).toHaveBeenCalledTimes(2);
    panel.dispose();
  });

  it('runs one more load when asked during a load, never two at once', async () => {
    const api = fakeApi();
    const { panel } = setup(api);
    const first = panel.refresh();
    const second = panel.refresh();
    const third = panel.refresh();
    await Promise.all([first, second, third]);
    expect(api.listModels).toHaveBeenCalledTimes(2);
    panel.dispose();
  });
});

describe('EasyTensorPanel detail', () => {
  async function selected(api = fakeApi(), confirmAnswer = true) {
    const ctx = setup(api, confirmAnswer);
    await ctx.panel.refresh();
    ctx
      .$<HTMLElement>(`.jp-EasyTensor-modelItem[data-model-id="${ID}"]`)!
      .click();
    return ctx;
  }

  it('shows endpoint, curl and versions of the selected model', async () => {
    const { panel, $, $$ } = await selected();
    expect(panel.selectedId).toBe(ID);
    expect($('.jp-EasyTensor-modelItem')!.classList).toContain(
      'jp-mod-selected'
    );
    expect($('.jp-EasyTensor-endpoint')!.textContent).toBe(model().endpoint);
    const curl = $('.jp-EasyTensor-curl')!.textContent!;
    expect(curl).toContain(`curl -X POST ${model().endpoint}`);
    expect(curl).toContain('Authorization: Bearer $EASYTENSOR_TOKEN');
    expect(curl).toContain('Content-Type: text/plain');

    const versions = $$('.jp-EasyTensor-versionItem');
    expect(versions.map(v => v.dataset.version)).toEqual(['2', '1']);
    const setDefault = (v: string) =>
      $<HTMLButtonElement>(
        `.jp-EasyTensor-versionItem[data-version="${v}"] .jp-EasyTensor-setDefault`
      )!;
    expect(setDefault('2').disabled).toBe(true);
    expect(setDefault('1').disabled).toBe(false);
    panel.dispose();
  });

  it('shows how the model is scaled', async () => {
    const scaled = model({
      scaling: { replicas: 2, autoscaling: null },
      backend: 'local',
      replicas_running: 1
    });
    const { panel, $ } = await selected(fakeApi([scaled]));
    const line = $('.jp-EasyTensor-scaling')!;
    expect(line.textContent).toBe(
      'Scaling: 2 replicas (fixed) · 1 running · local'
    );
    expect(line.hidden).toBe(false);
    panel.dispose();
  });

  it('hides the scaling line for a server that does not report it', async () => {
    const { panel, $ } = await selected();
    const line = $('.jp-EasyTensor-scaling')!;
    expect(line.hidden).toBe(true);
    expect(line.textContent).toBe('');
    panel.dispose();
  });

  it('copies the curl command', async () => {
    const { panel, $, services } = await selected();
    $<HTMLButtonElement>('.jp-EasyTensor-copy')!.click();
    expect(services.copy).toHaveBeenCalledWith(
      $('.jp-EasyTensor-curl')!.textContent
    );
    panel.dispose();
  });

  it('updates the curl command as the input changes', async () => {
    const { panel, $ } = await selected();
    const input = $<HTMLTextAreaElement>('.jp-EasyTensor-input')!;
    input.value = "Rates rise, markets don't";
    input.dispatchEvent(new Event('input'));
    expect($('.jp-EasyTensor-curl')!.textContent).toContain(
      `--data-binary 'Rates rise, markets don'\\''t'`
    );
    const mode = $<HTMLSelectElement>('.jp-EasyTensor-mode')!;
    mode.value = 'json';
    mode.dispatchEvent(new Event('change'));
    input.value = '"hi"';
    input.dispatchEvent(new Event('input'));
    expect($('.jp-EasyTensor-curl')!.textContent).toContain(
      `-d '{"instances":["hi"]}'`
    );
    panel.dispose();
  });

  it('predicts and shows the answer and latency', async () => {
    const api = fakeApi();
    api.predict.mockResolvedValue({
      response: {
        predictions: [{ label: 'business', score: 0.93 }],
        model_id: ID,
        version: 2,
        latency_ms: 3.2
      },
      roundTripMs: 12.34
    });
    const { panel, $ } = await selected(api);
    const input = $<HTMLTextAreaElement>('.jp-EasyTensor-input')!;
    input.value = 'Stocks rally';
    $<HTMLButtonElement>('.jp-EasyTensor-predictButton')!.click();
    await flush();
    expect(api.predict).toHaveBeenCalledWith(
      ID,
      { mode: 'text', text: 'Stocks rally' },
      undefined
    );
    expect(JSON.parse($('.jp-EasyTensor-answer')!.textContent!)).toEqual({
      label: 'business',
      score: 0.93
    });
    expect($('.jp-EasyTensor-latency')!.textContent).toBe(
      'Round trip 12.3 ms · model 3.2 ms · v2'
    );
    panel.dispose();
  });

  /** A selected model whose next prediction waits until ``reply`` is called. */
  async function heldQuery() {
    const api = fakeApi();
    let answer: (
      value: Awaited<ReturnType<IEasyTensorApi['predict']>>
    ) => void = () => undefined;
    api.predict.mockReturnValue(new Promise(resolve => (answer = resolve)));
    const ctx = await selected(api);
    ctx.$<HTMLTextAreaElement>('.jp-EasyTensor-input')!.value = 'Stocks rally';
    const reply = (roundTripMs: number) =>
      answer({
        response: { predictions: ['Business'], model_id: ID, version: 2 },
        roundTripMs
      });
    const predict = ctx.$<HTMLButtonElement>('.jp-EasyTensor-predictButton')!;
    return { ...ctx, api, predict, reply };
  }

  it('leaves the button alone for a fast answer and guards a second press', async () => {
    const { panel, $, api, predict, reply } = await heldQuery();
    predict.click();
    predict.click();
    await flush();
    expect(api.predict).toHaveBeenCalledTimes(1);
    const playground = $('.jp-EasyTensor-playground')!;
    expect(playground.hasAttribute('data-busy')).toBe(true);
    expect(predict.disabled).toBe(false);
    expect(predict.textContent).toBe('Predict');
    reply(3);
    await flush();
    expect(playground.hasAttribute('data-busy')).toBe(false);
    expect($('.jp-EasyTensor-answer')!.textContent).toBe('Business');
    panel.dispose();
  });

  it('shows a slow query as running', async () => {
    const { panel, predict, reply } = await heldQuery();
    predict.click();
    await new Promise(resolve => setTimeout(resolve, BUSY_LOOK_MS + 50));
    expect(predict.disabled).toBe(true);
    expect(predict.textContent).toBe('Predicting…');
    reply(400);
    await flush();
    expect(predict.disabled).toBe(false);
    expect(predict.textContent).toBe('Predict');
    panel.dispose();
  });

  it('refreshes the request count after a query', async () => {
    const api = fakeApi();
    api.predict.mockResolvedValue({
      response: {
        predictions: ['Business'],
        model_id: ID,
        version: 2,
        latency_ms: 1
      },
      roundTripMs: 4
    });
    api.getModel.mockResolvedValue(
      model({ stats: { requests: 11, errors: 1, last_latency_ms: 0.8 } })
    );
    const { panel, $ } = await selected(api);
    expect($('.jp-EasyTensor-summary')!.textContent).toContain('10 requests');
    $<HTMLTextAreaElement>('.jp-EasyTensor-input')!.value = 'Stocks rally';
    $<HTMLButtonElement>('.jp-EasyTensor-predictButton')!.click();
    await flush();
    await flush();
    expect(api.getModel).toHaveBeenCalledWith(ID);
    expect($('.jp-EasyTensor-summary')!.textContent).toContain(
      '11 requests, 1 error, last 0.80 ms'
    );
    expect($('.jp-EasyTensor-modelMeta')!.textContent).toContain(
      'last 0.80 ms'
    );
    expect($('.jp-EasyTensor-answer')!.textContent).toBe('Business');
    panel.dispose();
  });

  it('keeps the answer when the counts cannot be refreshed', async () => {
    const api = fakeApi();
    api.predict.mockResolvedValue({
      response: {
        predictions: ['World'],
        model_id: ID,
        version: 2,
        latency_ms: 1
      },
      roundTripMs: 4
    });
    api.getModel.mockRejectedValue(new EasyTensorError('gone', 502));
    const { panel, $ } = await selected(api);
    $<HTMLTextAreaElement>('.jp-EasyTensor-input')!.value = 'Talks resume';
    $<HTMLButtonElement>('.jp-EasyTensor-predictButton')!.click();
    await flush();
    await flush();
    expect($('.jp-EasyTensor-answer')!.textContent).toBe('World');
    expect($('.jp-EasyTensor-error')).toBeNull();
    panel.dispose();
  });

  it('puts Delete model at the end, away from the name', async () => {
    const { panel, $ } = await selected();
    const remove = $<HTMLButtonElement>('.jp-EasyTensor-delete')!;
    expect($('.jp-EasyTensor-detailHeader')!.contains(remove)).toBe(false);
    const detail = $('.jp-EasyTensor-detail')!;
    expect(detail.lastElementChild!.contains(remove)).toBe(true);
    expect(remove.closest('.jp-EasyTensor-dangerZone')).not.toBeNull();
    panel.dispose();
  });

  it('puts the copy button above the curl command', async () => {
    const { panel, $ } = await selected();
    const box = $('.jp-EasyTensor-curlBox')!;
    expect(
      box.firstElementChild!.querySelector('.jp-EasyTensor-copy')
    ).not.toBeNull();
    expect(box.lastElementChild!.classList).toContain('jp-EasyTensor-curl');
    panel.dispose();
  });

  it('queries a pinned version in JSON mode', async () => {
    const api = fakeApi();
    api.predict.mockResolvedValue({
      response: {
        predictions: [0, 1],
        model_id: ID,
        version: 1,
        latency_ms: 1
      },
      roundTripMs: 5
    });
    const { panel, $ } = await selected(api);
    const mode = $<HTMLSelectElement>('.jp-EasyTensor-mode')!;
    mode.value = 'json';
    mode.dispatchEvent(new Event('change'));
    $<HTMLSelectElement>('.jp-EasyTensor-versionSelect')!.value = '1';
    $<HTMLTextAreaElement>('.jp-EasyTensor-input')!.value =
      '{"instances": ["a", "b"]}';
    $<HTMLButtonElement>('.jp-EasyTensor-predictButton')!.click();
    await flush();
    expect(api.predict).toHaveBeenCalledWith(
      ID,
      { mode: 'json', instances: ['a', 'b'] },
      1
    );
    expect($('.jp-EasyTensor-answer')!.textContent).toBe('[\n  0,\n  1\n]');
    panel.dispose();
  });

  it('shows a prediction error next to the playground', async () => {
    const api = fakeApi();
    api.predict.mockRejectedValue(
      new EasyTensorError('Expected text', 422, '', 'bad_input')
    );
    const { panel, $ } = await selected(api);
    $<HTMLButtonElement>('.jp-EasyTensor-predictButton')!.click();
    await flush();
    expect(
      $('.jp-EasyTensor-playground .jp-EasyTensor-error')!.textContent
    ).toBe('Prediction failed: Error 422 (bad_input): Expected text');
    expect($('.jp-EasyTensor-answer')).toBeNull();
    expect($<HTMLButtonElement>('.jp-EasyTensor-predictButton')!.disabled).toBe(
      false
    );
    panel.dispose();
  });

  it('rejects invalid JSON before calling the server', async () => {
    const api = fakeApi();
    const { panel, $ } = await selected(api);
    const mode = $<HTMLSelectElement>('.jp-EasyTensor-mode')!;
    mode.value = 'json';
    mode.dispatchEvent(new Event('change'));
    $<HTMLTextAreaElement>('.jp-EasyTensor-input')!.value = '{nope';
    $<HTMLButtonElement>('.jp-EasyTensor-predictButton')!.click();
    await flush();
    expect(api.predict).not.toHaveBeenCalled();
    expect($('.jp-EasyTensor-error')!.textContent).toMatch(/not valid JSON/);
    panel.dispose();
  });

  it('makes another version the default', async () => {
    const api = fakeApi();
    api.setDefaultVersion.mockResolvedValue(model({ default_version: 1 }));
    const { panel, $ } = await selected(api);
    $<HTMLButtonElement>(
      '.jp-EasyTensor-versionItem[data-version="1"] .jp-EasyTensor-setDefault'
    )!.click();
    await flush();
    expect(api.setDefaultVersion).toHaveBeenCalledWith(ID, 1);
    expect(
      $<HTMLButtonElement>(
        '.jp-EasyTensor-versionItem[data-version="1"] .jp-EasyTensor-setDefault'
      )!.disabled
    ).toBe(true);
    expect($('.jp-EasyTensor-modelMeta')!.textContent).toMatch(/^v1 ·/);
    panel.dispose();
  });

  it('shows why a rollback failed', async () => {
    const api = fakeApi();
    api.setDefaultVersion.mockRejectedValue(
      new EasyTensorError('v1 failed to load', 409, 'Conflict', 'load_failed')
    );
    const { panel, $ } = await selected(api);
    $<HTMLButtonElement>(
      '.jp-EasyTensor-versionItem[data-version="1"] .jp-EasyTensor-setDefault'
    )!.click();
    await flush();
    expect($('.jp-EasyTensor-detail .jp-EasyTensor-error')!.textContent).toBe(
      'Could not make v1 the default: Error 409 Conflict (load_failed): v1 failed to load'
    );
    panel.dispose();
  });

  it('deletes only after confirmation', async () => {
    const api = fakeApi();
    const declined = await selected(api, false);
    declined.$<HTMLButtonElement>('.jp-EasyTensor-delete')!.click();
    await flush();
    expect(declined.services.confirm).toHaveBeenCalled();
    expect(api.deleteModel).not.toHaveBeenCalled();
    declined.panel.dispose();

    const { panel, $, services } = await selected(api, true);
    api.listModels.mockResolvedValue([]);
    $<HTMLButtonElement>('.jp-EasyTensor-delete')!.click();
    await flush();
    await flush();
    expect(services.confirm).toHaveBeenCalledWith(
      expect.objectContaining({ title: 'Delete model', accept: 'Delete' })
    );
    expect(api.deleteModel).toHaveBeenCalledWith(ID);
    expect($('.jp-EasyTensor-detail')).toBeNull();
    expect($('.jp-EasyTensor-empty')).not.toBeNull();
    expect(panel.selectedId).toBeNull();
    panel.dispose();
  });

  it('creates a token and shows it once', async () => {
    const api = fakeApi();
    api.createToken.mockResolvedValue({ id: 't1', token: 'et_q_abc' });
    api.listTokens.mockResolvedValue([
      {
        id: 't1',
        created_at: '2026-11-23T21:00:00Z',
        revoked: false,
        last_used_at: null
      }
    ]);
    const { panel, $, $$ } = await selected(api);
    $<HTMLButtonElement>('.jp-EasyTensor-newToken')!.click();
    await flush();
    expect(api.createToken).toHaveBeenCalledWith(ID);
    expect($('.jp-EasyTensor-tokenSecret')!.textContent).toBe(
      'export EASYTENSOR_TOKEN=et_q_abc'
    );
    expect($$('.jp-EasyTensor-tokenItem').map(t => t.dataset.tokenId)).toEqual([
      't1'
    ]);
    panel.dispose();
  });
});

describe('EasyTensorPanel tokens', () => {
  const TOKENS = [
    {
      id: 'tok_1',
      created_at: '2026-11-23T21:00:00Z',
      revoked: false,
      last_used_at: '2026-11-24T09:30:00Z',
      label: 'notebook 01_quickstart.ipynb, cell 9'
    },
    {
      id: 'tok_2',
      created_at: '2026-11-23T22:00:00Z',
      revoked: true,
      last_used_at: null,
      label: null
    }
  ];

  async function opened(
    api: jest.Mocked<IEasyTensorApi>,
    confirmAnswer = true
  ) {
    const ctx = setup(api, confirmAnswer);
    await ctx.panel.refresh();
    ctx
      .$<HTMLElement>(`.jp-EasyTensor-modelItem[data-model-id="${ID}"]`)!
      .click();
    const section = ctx.$<HTMLDetailsElement>('.jp-EasyTensor-tokens')!;
    section.open = true;
    section.dispatchEvent(new Event('toggle'));
    await flush();
    return ctx;
  }

  it('lists where each token was made, when, and when it was last used', async () => {
    const api = fakeApi();
    api.listTokens.mockResolvedValue(TOKENS);
    const { panel, $$ } = await opened(api);
    const items = $$('.jp-EasyTensor-tokenItem');
    expect(items.map(i => i.dataset.tokenId)).toEqual(['tok_1', 'tok_2']);
    const label = (i: HTMLElement) =>
      i.querySelector('.jp-EasyTensor-tokenLabel')!.textContent;
    expect(label(items[0])).toBe('notebook 01_quickstart.ipynb, cell 9');
    expect(
      items[0].querySelector('.jp-EasyTensor-tokenMeta')!.textContent
    ).toMatch(
      /^tok_1 · created 2026-11-2\d \d\d:\d\d · last used 2026-11-24 \d\d:\d\d$/
    );
    expect(label(items[1])).toBe('no label');
    expect(items[1].classList).toContain('jp-mod-revoked');
    expect(items[1].querySelector('.jp-EasyTensor-revokeToken')).toBeNull();
    expect(items[1].textContent).toContain('never used');
    panel.dispose();
  });

  it('revokes a token after confirmation and lists again', async () => {
    const api = fakeApi();
    api.listTokens.mockResolvedValueOnce(TOKENS);
    api.listTokens.mockResolvedValueOnce([
      { ...TOKENS[0], revoked: true },
      TOKENS[1]
    ]);
    api.revokeToken.mockResolvedValue(undefined);
    const { panel, $, services } = await opened(api);
    $<HTMLButtonElement>(
      '[data-token-id="tok_1"] .jp-EasyTensor-revokeToken'
    )!.click();
    await flush();
    await flush();
    expect(services.confirm).toHaveBeenCalledWith(
      expect.objectContaining({
        title: 'Revoke token',
        body: expect.stringContaining('notebook 01_quickstart.ipynb, cell 9')
      })
    );
    expect(api.revokeToken).toHaveBeenCalledWith(ID, 'tok_1');
    expect($('[data-token-id="tok_1"]')!.classList).toContain('jp-mod-revoked');
    panel.dispose();
  });

  it('revokes nothing when the confirmation is declined', async () => {
    const api = fakeApi();
    api.listTokens.mockResolvedValue(TOKENS);
    const { panel, $ } = await opened(api, false);
    $<HTMLButtonElement>(
      '[data-token-id="tok_1"] .jp-EasyTensor-revokeToken'
    )!.click();
    await flush();
    expect(api.revokeToken).not.toHaveBeenCalled();
    panel.dispose();
  });
});

describe('EasyTensorPanel long errors', () => {
  it('keeps the first line of a traceback in view and folds the rest', async () => {
    const api = fakeApi();
    const message =
      'Could not start the server\nTraceback (most recent call last):\n  boom';
    api.listModels.mockRejectedValue(
      new EasyTensorError(message, 503, 'Service Unavailable', 'not_connected')
    );
    api.status.mockResolvedValue({
      url: null,
      connected: false,
      embedded: true,
      version: null,
      error: message
    });
    const { panel, $ } = setup(api);
    await panel.refresh();
    expect($('.jp-EasyTensor-errorMessage')!.textContent).toBe(
      'Could not load models: Error 503 Service Unavailable (not_connected): Could not start the server'
    );
    expect($('.jp-EasyTensor-errorDetail pre')!.textContent).toContain('boom');
    const line = $('.jp-EasyTensor-status')!;
    expect(line.textContent).toBe('Inference server not connected');
    expect(line.title).toBe(message);
    panel.dispose();
  });
});
