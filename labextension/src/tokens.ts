import { button, clearError, copyButton, h, showError } from './dom';
import { TOKEN_VARIABLE } from './curl';
import { formatDate } from './format';
import { IUiServices } from './services';
import { IToken } from './types';

/**
 * Access tokens for the public endpoint. Collapsed by default and loaded on
 * first open, so selecting a model costs one request, not two.
 */
export class TokenSection {
  readonly node: HTMLDetailsElement;

  constructor(
    private readonly services: IUiServices,
    private readonly modelId: string
  ) {
    this.node = h(
      'details',
      { className: 'jp-EasyTensor-tokens' },
      h('summary', {
        className: 'jp-EasyTensor-sectionTitle',
        text: 'Access tokens'
      }),
      h(
        'div',
        { className: 'jp-EasyTensor-row' },
        button('New token', 'jp-EasyTensor-newToken', () => {
          void this.create();
        })
      ),
      this.secretSlot,
      this.errorSlot,
      this.listSlot
    );
    this.node.addEventListener('toggle', () => {
      if (this.node.open && !this.loaded) {
        void this.load();
      }
    });
  }

  async load(): Promise<void> {
    this.loaded = true;
    try {
      const tokens = await this.services.api.listTokens(this.modelId);
      clearError(this.errorSlot);
      this.render(tokens);
    } catch (error) {
      this.loaded = false;
      showError(this.errorSlot, error, 'Could not list tokens');
    }
  }

  private async create(): Promise<void> {
    clearError(this.errorSlot);
    try {
      const created = await this.services.api.createToken(this.modelId);
      this.showSecret(created.token);
      await this.load();
    } catch (error) {
      showError(this.errorSlot, error, 'Could not create a token');
    }
  }

  private async revoke(token: IToken): Promise<void> {
    const ok = await this.services.confirm({
      title: 'Revoke token',
      body:
        `Revoke token ${token.id} (${token.label || 'no label'})? ` +
        'Clients using it will get 401 from the endpoint.',
      accept: 'Revoke'
    });
    if (!ok) {
      return;
    }
    clearError(this.errorSlot);
    try {
      await this.services.api.revokeToken(this.modelId, token.id);
      await this.load();
    } catch (error) {
      showError(this.errorSlot, error, 'Could not revoke the token');
    }
  }

  private showSecret(secret: string): void {
    const exportLine = `export ${TOKEN_VARIABLE}=${secret}`;
    this.secretSlot.replaceChildren(
      h(
        'div',
        { className: 'jp-EasyTensor-secret' },
        h('div', {
          className: 'jp-EasyTensor-muted',
          text: 'Copy this token now: it is shown only once.'
        }),
        h('code', { className: 'jp-EasyTensor-tokenSecret', text: exportLine }),
        copyButton(
          'jp-EasyTensor-copyToken',
          () => exportLine,
          text => this.services.copy(text)
        )
      )
    );
  }

  private render(tokens: IToken[]): void {
    if (!tokens.length) {
      this.listSlot.replaceChildren(
        h('div', { className: 'jp-EasyTensor-muted', text: 'No tokens yet.' })
      );
      return;
    }
    this.listSlot.replaceChildren(
      h(
        'ul',
        { className: 'jp-EasyTensor-tokenList' },
        ...tokens.map(token => {
          const used = token.last_used_at
            ? `last used ${formatDate(token.last_used_at)}`
            : 'never used';
          const item = h(
            'li',
            {
              className: 'jp-EasyTensor-tokenItem',
              attrs: { 'data-token-id': token.id }
            },
            h(
              'div',
              { className: 'jp-EasyTensor-tokenMain' },
              h('span', {
                className: 'jp-EasyTensor-tokenLabel',
                text: token.label || 'no label',
                title: `Made by: ${token.label || 'unknown'}`
              }),
              token.revoked
                ? h('span', {
                    className: 'jp-EasyTensor-badge',
                    text: 'revoked'
                  })
                : button(
                    'Revoke',
                    'jp-EasyTensor-revokeToken',
                    () => {
                      void this.revoke(token);
                    },
                    `Revoke ${token.id}: clients using it get 401`
                  )
            ),
            h('div', {
              className: 'jp-EasyTensor-muted jp-EasyTensor-tokenMeta',
              text: `${token.id} · created ${formatDate(token.created_at)} · ${used}`
            })
          );
          item.classList.toggle('jp-mod-revoked', token.revoked);
          return item;
        })
      )
    );
  }

  private loaded = false;
  private readonly secretSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly errorSlot = h('div', { className: 'jp-EasyTensor-slot' });
  private readonly listSlot = h('div', { className: 'jp-EasyTensor-slot' });
}
