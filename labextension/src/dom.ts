import { describeDetail, describeError } from './errors';

type Child = Node | string | null | undefined | false;

export interface IElementOptions {
  className?: string;
  text?: string;
  title?: string;
  attrs?: Record<string, string>;
}

/** Small element factory so the views read as structure, not as DOM calls. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  options: IElementOptions = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (options.className) {
    node.className = options.className;
  }
  if (options.text !== undefined) {
    node.textContent = options.text;
  }
  if (options.title) {
    node.title = options.title;
  }
  for (const [name, value] of Object.entries(options.attrs ?? {})) {
    node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child) {
      node.append(child);
    }
  }
  return node;
}

export function button(
  label: string,
  className: string,
  onClick: () => void,
  title?: string
): HTMLButtonElement {
  const node = h('button', {
    className: `jp-EasyTensor-button ${className}`,
    text: label,
    title,
    attrs: { type: 'button' }
  });
  node.addEventListener('click', onClick);
  return node;
}

/** A Copy button that says "Copied" for a moment, since copying is silent. */
export function copyButton(
  className: string,
  text: () => string,
  copy: (text: string) => void,
  title?: string
): HTMLButtonElement {
  const node = button(
    'Copy',
    className,
    () => {
      copy(text());
      node.textContent = 'Copied';
      window.setTimeout(() => {
        node.textContent = 'Copy';
      }, 1500);
    },
    title
  );
  return node;
}

/**
 * A readable error box. Callers drop it from the DOM when the error is gone,
 * so `.jp-EasyTensor-error` only ever matches a live error.
 */
export function errorBox(error: unknown, context?: string): HTMLElement {
  // A multi-line message (e.g. a traceback) keeps its first line in view and
  // folds the rest away with the server's detail.
  const [headline, ...more] = describeError(error).split('\n');
  const detail = [more.join('\n').trim(), describeDetail(error)]
    .filter(Boolean)
    .join('\n\n');
  return h(
    'div',
    { className: 'jp-EasyTensor-error', attrs: { role: 'alert' } },
    h('div', {
      className: 'jp-EasyTensor-errorMessage',
      text: context ? `${context}: ${headline}` : headline
    }),
    detail &&
      h(
        'details',
        { className: 'jp-EasyTensor-errorDetail' },
        h('summary', { text: 'Details' }),
        h('pre', { text: detail })
      )
  );
}

/** Replaces the content of a slot that holds at most one error box. */
export function showError(
  slot: HTMLElement,
  error: unknown,
  context?: string
): void {
  slot.replaceChildren(errorBox(error, context));
}

export function clearError(slot: HTMLElement): void {
  slot.replaceChildren();
}
