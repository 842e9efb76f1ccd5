// Types of relureg.js (the ES module client of reluregd; the REST contract is api/openapi.yaml
// and ../../../shared/spec/api.md). Checked by `make browser` (tsc --strict on
// tests/browser/types.test.ts).

/** A row-major tensor. Requests take Float32Array (or nested number arrays, see tensor()). */
export interface Tensor<D extends ArrayLike<number | bigint> = Float32Array> {
  shape: number[];
  data: D;
}
/** Answers carry the typed array of their dtype. */
export type AnswerTensor = Tensor<Float32Array> | Tensor<Float64Array> | Tensor<BigInt64Array>;

/** A problem+json document (RFC 9457) as reluregd sends it. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  field?: string;
  [member: string]: unknown;
}

export class ProblemError extends Error {
  constructor(status: number, problem: Problem | string);
  readonly status: number;
  readonly problem: Problem;
  readonly type?: string;
  readonly title?: string;
  readonly detail?: string;
  readonly field?: string;
}

/** Job.wait's rejection when the job ended cancelled; `job` is its last document. */
export class JobCancelled extends Error {
  constructor(job: JobDocument);
  readonly job: JobDocument;
}

export type NestedNumbers = number | NestedNumbers[];
export function tensor(shape: number[], data: Float32Array | NestedNumbers[]): Tensor;
export function isTensor(v: unknown): v is Tensor<ArrayLike<number | bigint>>;

export interface SafetensorsEntry {
  dtype: 'F32' | 'F64' | 'I64' | string;
  shape: number[];
  data: Float32Array | Float64Array | BigInt64Array;
}
export function encodeSafetensors(
  tensors: Record<string, SafetensorsEntry>,
  metadata?: Record<string, string>,
): Uint8Array;
export function decodeSafetensors(buf: ArrayBuffer | Uint8Array): {
  metadata: Record<string, string>;
  tensors: Record<string, SafetensorsEntry>;
};

/** Every call takes an AbortSignal: aborting rejects it with the signal's reason. */
export interface CallOptions {
  signal?: AbortSignal | null;
}

export type JobStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
export interface JobDocument {
  job: string;
  status: JobStatus;
  progress?: number;
  result?: Answer;
  error?: Problem;
  [member: string]: unknown;
}

/** An answer document: JSON members, with tensors revived as typed arrays. */
export interface Answer {
  [member: string]: unknown;
}

export class Job {
  constructor(client: Client, id: string);
  readonly client: Client;
  readonly id: string;
  last: JobDocument;
  status(opts?: CallOptions): Promise<JobDocument>;
  /** Polls until the job ends: its result, or ProblemError (failed) / JobCancelled. */
  wait(opts?: CallOptions & {
    poll?: number;
    onProgress?: ((fraction: number, doc: JobDocument) => void) | null;
  }): Promise<Answer>;
  cancel(opts?: CallOptions): Promise<JobDocument | null>;
}

export interface ClientOptions {
  /** Sent as `Authorization: Bearer` (model uploads and deletes under --token-file). */
  token?: string | null;
  /** Tensors as application/vnd.safetensors both ways (default true). */
  binary?: boolean;
  /** Retries of a 503 that carries Retry-After (default 3). */
  retries?: number;
  fetch?: typeof globalThis.fetch | null;
}

/** Members of a compute request besides `inputs` (api.md), and the call's options. */
export interface ComputeOptions extends CallOptions {
  /** Run as a job: the call resolves with a Job. */
  async?: boolean;
  [member: string]: unknown;
}
export type Async<O> = O extends { async: true } ? Job : Answer;

export type RegularizerSpec = string | { name: string; [option: string]: unknown };
export interface AttackSpec {
  attack: string;
  norm?: 'linf' | 'l2' | 'l1' | string;
  epsilon?: number;
  [option: string]: unknown;
}

export interface ModelInfo {
  name: string;
  input_shape: number[];
  num_classes: number;
  class_names?: string[];
  [member: string]: unknown;
}

export class Client {
  constructor(baseUrl?: string, opts?: ClientOptions);
  readonly baseUrl: string;
  token: string | null;
  binary: boolean;
  retries: number;

  raw(method: string, path: string, opts?: CallOptions & {
    body?: BodyInit | null;
    headers?: Record<string, string>;
    retries?: number;
  }): Promise<Response>;
  request(method: string, path: string, doc?: unknown, opts?: CallOptions): Promise<Answer | null>;
  static modelPath(name: string, suffix?: string): string;
  compute<O extends ComputeOptions>(name: string, route: string, inputs: Tensor | NestedNumbers[],
    doc?: O): Promise<Async<O>>;

  models(opts?: CallOptions): Promise<{ models: ModelInfo[] }>;
  model(name: string, opts?: CallOptions): Promise<ModelInfo>;
  putModel(name: string, bytes: Uint8Array | ArrayBuffer | Blob, opts?: CallOptions): Promise<ModelInfo>;
  deleteModel(name: string, opts?: CallOptions): Promise<null>;
  weights(name: string, opts?: CallOptions): Promise<Uint8Array>;
  ready(opts?: CallOptions): Promise<boolean>;
  dataset(split?: 'train' | 'test', opts?: CallOptions & { offset?: number; limit?: number }):
    Promise<{ images: Tensor; labels: number[]; [member: string]: unknown }>;

  predict<O extends ComputeOptions>(name: string, inputs: Tensor | NestedNumbers[], opts?: O): Promise<Async<O>>;
  jacobian<O extends ComputeOptions>(name: string, inputs: Tensor | NestedNumbers[], opts?: O): Promise<Async<O>>;
  regularizers<O extends ComputeOptions>(name: string, inputs: Tensor | NestedNumbers[], labels: number[],
    regularizers?: RegularizerSpec[], opts?: O): Promise<Async<O>>;
  connections<O extends ComputeOptions>(name: string, inputs: Tensor | NestedNumbers[], labels: number[],
    opts?: O): Promise<Async<O>>;
  attack<O extends ComputeOptions>(name: string, inputs: Tensor | NestedNumbers[], labels: number[],
    attack?: AttackSpec, opts?: O): Promise<Async<O>>;
  certify<O extends ComputeOptions>(name: string, inputs: Tensor | NestedNumbers[], opts?: O): Promise<Async<O>>;
  robustness<O extends ComputeOptions>(name: string, inputs: Tensor | NestedNumbers[], labels: number[],
    opts?: O): Promise<Async<O>>;
  job(id: string): Job;
}
