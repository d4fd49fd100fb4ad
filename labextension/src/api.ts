import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from './request';
import { IStreamResult, streamRequest } from './stream';
import {
  IModel,
  IModelList,
  INewToken,
  IPredictResponse,
  IPredictResult,
  IServerStatus,
  IToken,
  ITokenList,
  PredictInput,
  IVersionDiff
} from './types';

/** What the UI needs from the server; the panel depends on this, not on HTTP. */
export interface IEasyTensorApi {
  status(): Promise<IServerStatus>;
  listModels(): Promise<IModel[]>;
  getModel(id: string): Promise<IModel>;
  deleteModel(id: string): Promise<void>;
  deleteVersion(id: string, version: number): Promise<void>;
  setDefaultVersion(id: string, version: number): Promise<IModel>;
  predict(
    id: string,
    input: PredictInput,
    version?: number
  ): Promise<IPredictResult>;
  /** Streams a model's predict_stream; `onChunk` hears each chunk as it arrives. */
  predictStream?(
    id: string,
    input: PredictInput,
    version: number | undefined,
    onChunk: (chunk: unknown, index: number) => void
  ): Promise<IStreamResult>;
  listTokens(id: string): Promise<IToken[]>;
  createToken(id: string): Promise<INewToken>;
  revokeToken(id: string, tokenId: string): Promise<void>;
  diffVersions(id: string, from: number, to: number): Promise<IVersionDiff>;
}

/** Body and content type of a predict call for each playground mode. */
export function predictBody(input: PredictInput): {
  body: BodyInit;
  contentType: string;
} {
  switch (input.mode) {
    case 'json':
      return {
        body: JSON.stringify({ instances: input.instances }),
        contentType: 'application/json'
      };
    case 'text':
      return { body: input.text, contentType: 'text/plain' };
    case 'file':
      return {
        body: input.file,
        contentType: input.contentType || 'application/octet-stream'
      };
  }
}

function modelPath(id: string, ...rest: (string | number)[]): string {
  return ['models', id, ...rest.map(String)].map(encodeURIComponent).join('/');
}

const JSON_HEADERS = { 'Content-Type': 'application/json' };

export class EasyTensorClient implements IEasyTensorApi {
  /**
   * @param settings the app's server settings; Jupyter's defaults if omitted.
   * @param now clock for round-trip latency, replaceable in tests.
   */
  constructor(
    private readonly settings?: ServerConnection.ISettings,
    private readonly now: () => number = () => performance.now()
  ) {}

  status(): Promise<IServerStatus> {
    return this.call<IServerStatus>('status');
  }

  async listModels(): Promise<IModel[]> {
    const list = await this.call<IModelList>('models');
    return list?.models ?? [];
  }

  getModel(id: string): Promise<IModel> {
    return this.call<IModel>(modelPath(id));
  }

  async deleteModel(id: string): Promise<void> {
    await this.call<void>(modelPath(id), { method: 'DELETE' });
  }

  async deleteVersion(id: string, version: number): Promise<void> {
    await this.call<void>(modelPath(id, 'versions', version), {
      method: 'DELETE'
    });
  }

  setDefaultVersion(id: string, version: number): Promise<IModel> {
    return this.call<IModel>(modelPath(id, 'default'), {
      method: 'PUT',
      headers: JSON_HEADERS,
      body: JSON.stringify({ version })
    });
  }

  async predict(
    id: string,
    input: PredictInput,
    version?: number
  ): Promise<IPredictResult> {
    const { body, contentType } = predictBody(input);
    const query = version === undefined ? '' : `?version=${version}`;
    const started = this.now();
    const response = await this.call<IPredictResponse>(
      modelPath(id, 'predict') + query,
      { method: 'POST', headers: { 'Content-Type': contentType }, body }
    );
    return { response, roundTripMs: this.now() - started };
  }

  predictStream(
    id: string,
    input: PredictInput,
    version: number | undefined,
    onChunk: (chunk: unknown, index: number) => void
  ): Promise<IStreamResult> {
    const { body, contentType } = predictBody(input);
    const query = version === undefined ? '' : `?version=${version}`;
    return streamRequest(
      modelPath(id, 'predict') + query,
      body,
      contentType,
      onChunk,
      this.settings,
      this.now
    );
  }

  async listTokens(id: string): Promise<IToken[]> {
    const list = await this.call<ITokenList>(modelPath(id, 'tokens'));
    return list?.tokens ?? [];
  }

  createToken(id: string): Promise<INewToken> {
    return this.call<INewToken>(modelPath(id, 'tokens'), {
      method: 'POST',
      headers: JSON_HEADERS,
      body: '{}'
    });
  }

  async revokeToken(id: string, tokenId: string): Promise<void> {
    await this.call<void>(modelPath(id, 'tokens', tokenId), {
      method: 'DELETE'
    });
  }

  diffVersions(id: string, from: number, to: number): Promise<IVersionDiff> {
    return this.call<IVersionDiff>(
      `${modelPath(id, 'diff')}?from=${from}&to=${to}`
    );
  }

  private call<T>(endPoint: string, init: RequestInit = {}): Promise<T> {
    return requestAPI<T>(endPoint, init, this.settings);
  }
}
