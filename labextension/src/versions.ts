import { button, h } from './dom';
import { formatBytes, formatDate } from './format';
import { IModel, IModelVersion, ModelStatus } from './types';

export interface IVersionActions {
  setDefault(version: number): void;
  deleteVersion(version: number): void;
  /** Show what changed from ``from`` to ``version``. */
  diff?(from: number, version: number): void;
  /** Open the notebook cell the version came from. */
  openCell?(version: IModelVersion): void;
}

export function statusBadge(status: ModelStatus | string): HTMLElement {
  return h('span', {
    className: `jp-EasyTensor-badge jp-EasyTensor-badge-${status}`,
    text: status
  });
}

/** The version list, newest first, with rollback and delete per version. */
export function renderVersions(
  model: IModel,
  actions: IVersionActions
): HTMLElement {
  const versions = [...model.versions].sort((a, b) => b.version - a.version);
  return h(
    'ul',
    { className: 'jp-EasyTensor-versionList' },
    ...versions.map(v => {
      const isDefault = v.version === model.default_version;
      const setDefault = button(
        isDefault ? 'Default' : 'Set default',
        'jp-EasyTensor-setDefault',
        () => actions.setDefault(v.version),
        isDefault
          ? 'This version answers the endpoint'
          : `Make v${v.version} answer the endpoint (rollback)`
      );
      setDefault.disabled = isDefault;
      const remove = button(
        'Delete',
        'jp-EasyTensor-deleteVersion',
        () => actions.deleteVersion(v.version),
        `Delete v${v.version}`
      );
      const older = versions.find(o => o.version < v.version);
      const diff =
        older && actions.diff
          ? button(
              `Diff v${older.version}`,
              'jp-EasyTensor-diffButton',
              () => actions.diff?.(older.version, v.version),
              `What changed from v${older.version} to v${v.version}`
            )
          : null;
      const source =
        v.provenance?.notebook && actions.openCell
          ? button(
              'Open the source cell',
              'jp-EasyTensor-openCell',
              () => actions.openCell?.(v),
              `${v.provenance.notebook}, cell [${v.provenance.execution_count ?? '?'}]`
            )
          : null;
      const item = h(
        'li',
        {
          className: 'jp-EasyTensor-versionItem',
          attrs: { 'data-version': String(v.version) }
        },
        h(
          'div',
          { className: 'jp-EasyTensor-versionMain' },
          h('span', {
            className: 'jp-EasyTensor-versionName',
            text: `v${v.version}`
          }),
          statusBadge(v.status),
          h('span', {
            className: 'jp-EasyTensor-muted',
            text: `${v.class_name} · ${v.input_kind} · ${formatBytes(v.size_bytes)}`
          })
        ),
        h('div', {
          className: 'jp-EasyTensor-muted jp-EasyTensor-versionEnv',
          text: environmentText(v)
        }),
        h(
          'div',
          { className: 'jp-EasyTensor-versionMeta' },
          h('span', {
            className: 'jp-EasyTensor-muted',
            text: formatDate(v.created_at)
          }),
          setDefault,
          diff,
          source,
          remove
        )
      );
      item.classList.toggle('jp-mod-default', isDefault);
      return item;
    })
  );
}

const ENVIRONMENTS: Record<string, string> = {
  server: "runs in the server's environment",
  ready: 'runs in its own environment',
  building: 'its environment is being built',
  missing: 'the server lacks its requirements'
};

/** The version's pinned requirements and where it runs, for the version list. */
export function environmentText(v: IModelVersion): string {
  const pins = v.requirements?.length
    ? v.requirements.join(', ')
    : 'no pins beyond torch';
  const warnings = (v.warnings ?? []).map(w => ` · warning: ${w}`).join('');
  return `${pins} · ${ENVIRONMENTS[v.environment ?? 'server']}${warnings}`;
}
