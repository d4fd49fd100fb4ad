/** Shapes of the JSON served under `<baseUrl>/easytensor/api/`. */

export type InputKind = 'text' | 'bytes' | 'image' | 'json' | 'unknown';

export type ModelStatus = 'ready' | 'idle' | 'loading' | 'failed';

export interface IServerStatus {
  url: string | null;
  connected: boolean;
  embedded: boolean;
  version: string | null;
  error: string | null;
}

export interface IModelVersion {
  version: number;
  created_at: string;
  size_bytes: number;
  class_name: string;
  input_kind: InputKind;
  /** The model has predict_stream, so the playground streams its answers. */
  streaming?: boolean;
  status: ModelStatus;
  requirements?: string[];
  environment?: 'server' | 'ready' | 'building' | 'missing';
  warnings?: string[];
  provenance?: IProvenance;
}

/** Where a version came from: the notebook, cell and execution count. */
export interface IProvenance {
  notebook?: string | null;
  cell_id?: string | null;
  execution_count?: number | null;
}

export interface ITensorChange {
  name: string;
  max_abs_diff: number | null;
}

export interface ITensorSummary {
  total: number | null;
  changed: ITensorChange[];
  added: string[];
  removed: string[];
}

/** GET /v1/models/{id}/diff: what changed from one version to another. */
export interface IVersionDiff {
  from: number;
  to: number;
  same: boolean;
  files: { name: string; status: string; diff: string }[];
  manifest: Record<string, { from: unknown; to: unknown }>;
  weights: ITensorSummary;
  data_tensors: Record<string, ITensorSummary>;
}

/** A kernel's comparison of its model with the deployed default. */
export interface IKernelDrift {
  model_id: string;
  name: string;
  version: number | null;
  state: 'same' | 'drifted' | 'unknown';
  kinds: string[];
  lines: string[];
  message: string;
  reason?: string | null;
  /** The notebook whose kernel reported it (added by the lab side). */
  notebook?: string;
}

export interface IModelStats {
  requests: number;
  errors: number;
  last_latency_ms: number | null;
}

/** Exactly one of the two is set: a fixed count, or autoscaling bounds (Ray backend). */
export interface IModelScaling {
  replicas: number | null;
  autoscaling: IAutoscaling | null;
}

export interface IAutoscaling {
  min_replicas: number;
  max_replicas: number;
  target_ongoing_requests: number;
}

export type ServingBackend = 'local' | 'ray';

export interface IReplica {
  id: string;
  /** Ray's node id, or the server's host name on the local backend. */
  node: string;
  node_ip?: string | null;
  state: 'pending' | 'starting' | 'running' | 'stopping' | 'failed';
  started_at?: string | null;
  requests?: number | null;
  device?: string | null;
  pid?: number | null;
}

export interface IModel {
  id: string;
  name: string;
  default_version: number;
  created_at: string;
  status: ModelStatus;
  size_bytes: number;
  endpoint: string;
  stats: IModelStats;
  versions: IModelVersion[];
  /** Optional since older servers do not send them. */
  scaling?: IModelScaling;
  backend?: ServingBackend;
  /** Live Ray replicas or local worker processes serving the default version. */
  replicas_running?: number;
  /** Each of them (older servers do not send it). */
  replicas?: IReplica[];
}

export interface IModelList {
  models: IModel[];
}

export interface IPredictResponse {
  predictions: unknown[];
  model_id: string;
  version: number;
  latency_ms: number;
}

export interface IToken {
  id: string;
  created_at: string;
  revoked: boolean;
  last_used_at: string | null;
  /** Where it was made: a notebook and cell, the CLI, this panel. Older servers omit it. */
  label?: string | null;
}

export interface ITokenList {
  tokens: IToken[];
}

export interface INewToken {
  id: string;
  token: string;
}

/** One playground query, in the three body forms the predict route accepts. */
export type PredictInput =
  | { mode: 'json'; instances: unknown[] }
  | { mode: 'text'; text: string }
  | { mode: 'file'; file: Blob; contentType: string };

/** A prediction plus the latency the browser saw, which includes the network. */
export interface IPredictResult {
  response: IPredictResponse;
  roundTripMs: number;
}
