import { IEasyTensorApi } from './api';
import { ICurlOptions } from './curl';
import { button, clearError, h, showError } from './dom';
import { formatLatency, formatPredictions } from './format';
import {
  defaultMode,
  defaultVersion,
  fileContentType,
  INPUT_MODES,
  InputMode,
  parseJsonInput
} from './input';
import { streamInto } from './streamView';
import { IModel, IPredictResult, PredictInput } from './types';

const PLACEHOLDERS: Record<InputMode, string> = {
  text: 'Text to send as one instance',
  json: 'One instance, e.g. [5.1, 3.5, 1.4, 0.2], or a whole {"instances": [...]} body',
  file: ''
};

/** How long a query may take before the button shows that it is running. */
export const BUSY_LOOK_MS = 150;

/** Query form for one model: input, version, Predict, and the answer. */
export class Playground {
  readonly node: HTMLElement;

  constructor(
    private readonly api: IEasyTensorApi,
    private model: IModel,
    /** Called when anything that the curl command shows has changed. */
    private readonly onInputChange: () => void,
    /** Called after each answered query, since the model's counts moved. */
    private readonly onPredicted: () => void = () => undefined
  ) {
    this.mode = defaultMode(defaultVersion(model)?.input_kind);

    this.modeSelect = h(
      'select',
      { className: 'jp-EasyTensor-mode', title: 'Input mode' },
      ...INPUT_MODES.map(m =>
        h('option', { text: m.label, attrs: { value: m.value } })
      )
    );
    this.modeSelect.value = this.mode;
    this.modeSelect.addEventListener('change', () => {
      this.mode = this.modeSelect.value as InputMode;
      this.syncMode();
      this.onInputChange();
    });

    this.versionSelect = h('select', {
      className: 'jp-EasyTensor-versionSelect',
      title: 'Version to query'
    });
    this.fillVersions();

    this.input = h('textarea', {
      className: 'jp-EasyTensor-input',
      attrs: { rows: '4', spellcheck: 'false' }
    });
    this.input.addEventListener('input', () => this.onInputChange());
    this.input.addEventListener('keydown', event => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        void this.predict();
      }
    });

    this.fileInput = h('input', {
      className: 'jp-EasyTensor-fileInput',
      attrs: { type: 'file' }
    });
    this.fileInput.addEventListener('change', () => this.onInputChange());

    this.predictButton = button(
      'Predict',
      'jp-EasyTensor-predictButton',
      () => {
        void this.predict();
      }
    );
    this.predictButton.classList.add('jp-mod-accept');

    this.node = h(
      'section',
      { className: 'jp-EasyTensor-playground' },
      h('h3', { className: 'jp-EasyTensor-sectionTitle', text: 'Try it' }),
      h(
        'div',
        { className: 'jp-EasyTensor-controls' },
        h('label', { text: 'Input ' }, this.modeSelect),
        h('label', { text: 'Version ' }, this.versionSelect)
      ),
      this.input,
      this.fileInput,
      h('div', { className: 'jp-EasyTensor-row' }, this.predictButton),
      this.errorSlot,
      this.resultSlot
    );
    this.syncMode();
  }

  /** Takes a fresh copy of the model (after a refresh) without losing the input. */
  setModel(model: IModel): void {
    this.model = model;
    this.fillVersions();
  }

  curlOptions(): ICurlOptions {
    const endpoint = this.model.endpoint;
    switch (this.mode) {
      case 'text':
        return { endpoint, mode: 'text', body: this.input.value };
      case 'json': {
        let body: string | undefined;
        try {
          body = JSON.stringify({
            instances: parseJsonInput(this.input.value)
          });
        } catch {
          body = undefined;
        }
        return { endpoint, mode: 'json', body };
      }
      case 'file': {
        const file = this.selectedFile();
        return {
          endpoint,
          mode: 'file',
          fileName: file?.name,
          contentType: file ? fileContentType(file) : undefined
        };
      }
    }
  }

  async predict(): Promise<void> {
    if (this.running) {
      return;
    }
    clearError(this.errorSlot);
    let input: PredictInput;
    try {
      input = this.collectInput();
    } catch (error) {
      showError(this.errorSlot, error);
      return;
    }
    const version = this.versionSelect.value
      ? Number(this.versionSelect.value)
      : undefined;

    // data-busy is for automation and styles nothing; the button changes only if the answer
    // is slow, since redrawing it while the request is out cost a fast query 1.5 ms.
    this.running = true;
    this.node.setAttribute('data-busy', 'true');
    const slow = window.setTimeout(() => {
      this.predictButton.disabled = true;
      this.predictButton.textContent = 'Predicting…';
    }, BUSY_LOOK_MS);
    try {
      if (this.streams(version) && this.api.predictStream) {
        await streamInto(
          this.api,
          this.model.id,
          input,
          version,
          this.resultSlot
        );
        return;
      }
      const result = await this.api.predict(this.model.id, input, version);
      this.showResult(
        result,
        input.mode === 'json' ? input.instances.length : 1
      );
    } catch (error) {
      this.resultSlot.replaceChildren();
      showError(this.errorSlot, error, 'Prediction failed');
    } finally {
      window.clearTimeout(slow);
      this.running = false;
      if (this.predictButton.disabled) {
        this.predictButton.disabled = false;
        this.predictButton.textContent = 'Predict';
      }
      this.node.removeAttribute('data-busy');
      // A failed query counts too (as an error), so both refresh the counts.
      this.onPredicted();
    }
  }

  private streams(version: number | undefined): boolean {
    const wanted = version ?? this.model.default_version;
    return Boolean(
      this.model.versions.find(v => v.version === wanted)?.streaming
    );
  }

  private collectInput(): PredictInput {
    switch (this.mode) {
      case 'text':
        return { mode: 'text', text: this.input.value };
      case 'json':
        return { mode: 'json', instances: parseJsonInput(this.input.value) };
      case 'file': {
        const file = this.selectedFile();
        if (!file) {
          throw new Error('Choose a file to send.');
        }
        return { mode: 'file', file, contentType: fileContentType(file) };
      }
    }
  }

  private showResult(result: IPredictResult, instanceCount: number): void {
    const { response, roundTripMs } = result;
    const parts = [`Round trip ${formatLatency(roundTripMs)}`];
    if (typeof response.latency_ms === 'number') {
      parts.push(`model ${formatLatency(response.latency_ms)}`);
    }
    if (typeof response.version === 'number') {
      parts.push(`v${response.version}`);
    }
    const latency = h('div', {
      className: 'jp-EasyTensor-latency',
      text: parts.join(' · '),
      attrs: { 'data-ms': roundTripMs.toFixed(1) }
    });
    const answer = h('pre', {
      className: 'jp-EasyTensor-answer',
      text: formatPredictions(response.predictions ?? [], instanceCount)
    });
    this.resultSlot.replaceChildren(latency, answer);
  }

  private selectedFile(): File | null {
    return this.fileInput.files?.[0] ?? null;
  }

  private syncMode(): void {
    const isFile = this.mode === 'file';
    this.input.hidden = isFile;
    this.fileInput.hidden = !isFile;
    this.input.placeholder = PLACEHOLDERS[this.mode];
  }

  private fillVersions(): void {
    const previous = this.versionSelect.value;
    const options = [
      h('option', {
        text: `default (v${this.model.default_version})`,
        attrs: { value: '' }
      }),
      ...[...this.model.versions]
        .sort((a, b) => b.version - a.version)
        .map(v =>
          h('option', {
            text: `v${v.version}`,
            attrs: { value: String(v.version) }
          })
        )
    ];
    this.versionSelect.replaceChildren(...options);
    const stillThere = options.some(o => o.value === previous);
    this.versionSelect.value = stillThere ? previous : '';
  }

  private mode: InputMode;
  private running = false;
  private readonly modeSelect: HTMLSelectElement;
  private readonly versionSelect: HTMLSelectElement;
  private readonly input: HTMLTextAreaElement;
  private readonly fileInput: HTMLInputElement;
  private readonly predictButton: HTMLButtonElement;
  private readonly errorSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly resultSlot = h('div', { className: 'jp-EasyTensor-result' });
}
