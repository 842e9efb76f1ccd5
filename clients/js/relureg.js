// relureg.js: an ES module client for reluregd (../../../shared/spec/api.md), for browsers and
// Node >= 18 (anything with fetch). No dependencies, no framework.
//
//   import { Client, tensor } from '/static/relureg.js';
//   const rr = new Client();                        // same origin; or new Client('http://host:8080')
//   const { models } = await rr.models();
//   const x = tensor([2, 784], new Float32Array(2 * 784));
//   const r = await rr.predict('mlp', x);            // r.logits is {shape, data: Float32Array}
//   const job = await rr.robustness('mlp', x, [3, 7], { epsilons: [0.1], async: true });
//   const report = await job.wait({ onProgress: (f) => console.log(f) });
//
// Tensors are {shape: number[], data: Float32Array} (answers: Float32Array, Float64Array or
// BigInt64Array by dtype). Requests carrying tensors travel as safetensors when `binary` is on
// (the default): `inputs` and float tensors are keyed by their JSON Pointer, everything else
// rides in the `relureg.request` metadata (model-format.md, "Requests and responses in
// binary"); answers are asked for in binary too and put back together into one document.
// Failures throw ProblemError carrying the problem+json document (status, type, title,
// detail, field). A 503 that carries Retry-After (queue full, not ready, draining) is retried
// after that many seconds, up to `retries` times (default 3); a 503 without it and a 503
// /problems/timeout are not retried -- the rule of the Python client (clients/python). A job
// that ends cancelled rejects Job.wait with JobCancelled (as Python's JobCancelled), a failed
// one with its ProblemError.
//
// Every call takes an AbortSignal as `signal` in its options (compute calls: in `opts`, kept
// out of the request document): aborting rejects the call with the signal's reason (an
// AbortError DOMException unless given another), also while it waits to retry a 503 or
// between polls of Job.wait. Aborting a synchronous computation drops its connection, and the
// daemon then cancels the computation; a job goes on until Job.cancel. Types: relureg.d.ts
// beside this file.

const JSON_TYPE = 'application/json';
const ST_TYPE = 'application/vnd.safetensors';

export class ProblemError extends Error {
  constructor(status, problem) {
    const p = problem && typeof problem === 'object' ? problem : { detail: String(problem) };
    super(`${status} ${p.title || 'error'}: ${p.detail || p.error || ''}`.trim());
    this.name = 'ProblemError';
    this.status = status;
    this.problem = p;
    this.type = p.type;
    this.title = p.title;
    this.detail = p.detail;
    this.field = p.field;
  }
}

// Job.wait's rejection when the job ended cancelled; `job` is its last document.
export class JobCancelled extends Error {
  constructor(job) {
    super(`job ${job && job.job} was cancelled`);
    this.name = 'JobCancelled';
    this.job = job;
  }
}

// A tensor from a shape and flat row-major data (numbers, nested arrays or a typed array).
export function tensor(shape, data) {
  const flat = data instanceof Float32Array ? data : Float32Array.from(flatten(data));
  const n = shape.reduce((a, b) => a * b, 1);
  if (flat.length !== n) throw new RangeError(`tensor: ${flat.length} values for shape [${shape}]`);
  return { shape: [...shape], data: flat };
}

export function isTensor(v) {
  return v !== null && typeof v === 'object' && Array.isArray(v.shape) &&
    (ArrayBuffer.isView(v.data) || Array.isArray(v.data));
}

function flatten(a) {
  if (ArrayBuffer.isView(a)) return Array.from(a);
  if (!Array.isArray(a)) return [a];
  return a.flat(Infinity);
}

// ---- safetensors (model-format.md) ----

const DTYPES = {
  F32: [4, Float32Array], F64: [8, Float64Array], I64: [8, BigInt64Array],
  I32: [4, Int32Array], U8: [1, Uint8Array], BOOL: [1, Uint8Array],
};

export function encodeSafetensors(tensors, metadata) {
  // tensors: {key: {dtype, shape, data: TypedArray}}; keys in sorted order, data 8-aligned.
  const header = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  const keys = Object.keys(tensors).sort();
  for (const k of keys) {
    const t = tensors[k];
    const n = t.data.byteLength;
    header[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let h = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (h.length % 8)) % 8;
  if (pad) h = new TextEncoder().encode(JSON.stringify(header) + ' '.repeat(pad));
  const out = new Uint8Array(8 + h.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  let p = 8 + h.length;
  for (const k of keys) {
    const d = tensors[k].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), p);
    p += d.byteLength;
  }
  return out;
}

export function decodeSafetensors(buf) {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  if (bytes.length < 8) throw new Error('safetensors: shorter than its header length');
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  if (8 + n > bytes.length) throw new Error('safetensors: header runs past the end');
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const base = 8 + n;
  const tensors = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') continue;
    const [size, Ctor] = DTYPES[v.dtype] || [];
    if (!Ctor) throw new Error(`safetensors: dtype ${v.dtype} of ${k} is not supported`);
    const [a, b] = v.data_offsets;
    const off = bytes.byteOffset + base + a;
    // A view of the answer's buffer when the tensor is aligned for its type (reluregd pads
    // the header so that it is), else an aligned copy.
    const data = off % size === 0
      ? new Ctor(bytes.buffer, off, (b - a) / size)
      : new Ctor(bytes.slice(base + a, base + b).buffer, 0, (b - a) / size);
    tensors[k] = { shape: v.shape, dtype: v.dtype, data };
  }
  return { metadata: header.__metadata__ || {}, tensors };
}

function pointerSet(doc, pointer, value) {
  const toks = pointer.split('/').slice(1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  let cur = doc;
  toks.forEach((tok, i) => {
    const last = i === toks.length - 1;
    const key = Array.isArray(cur) ? Number(tok) : tok;
    if (last) cur[key] = value;
    else {
      if (cur[key] === undefined || cur[key] === null) cur[key] = {};
      cur = cur[key];
    }
  });
}

// JSON object-form tensors ({shape, datatype, data}) in an answer become typed arrays.
function reviveTensors(v) {
  if (Array.isArray(v)) return v.map(reviveTensors);
  if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) return v;
  if (Array.isArray(v.shape) && typeof v.datatype === 'string' && Array.isArray(v.data)) {
    const Ctor = { FP32: Float32Array, FP64: Float64Array, INT32: Int32Array }[v.datatype];
    return { shape: v.shape, data: Ctor ? Ctor.from(v.data, (x) => (x === null ? NaN : x)) : v.data };
  }
  const out = {};
  for (const [k, x] of Object.entries(v)) out[k] = reviveTensors(x);
  return out;
}

function jsonTensor(t) {
  return { shape: t.shape, datatype: 'FP32', data: Array.from(t.data) };
}

function asTensor(x) {
  if (isTensor(x)) return x.data instanceof Float32Array ? x : tensor(x.shape, x.data);
  throw new TypeError('inputs must be a tensor {shape, data} (see tensor())');
}

// Resolves after `ms`, or rejects with the signal's reason as soon as it aborts.
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(signal.reason); return; }
    const done = () => { signal?.removeEventListener('abort', stop); resolve(); };
    const t = setTimeout(done, ms);
    function stop() { clearTimeout(t); reject(signal.reason); }
    signal?.addEventListener('abort', stop, { once: true });
  });
}

// ---- jobs ----

export class Job {
  constructor(client, id) {
    this.client = client;
    this.id = id;
    this.last = { job: id, status: 'queued', progress: 0 };
  }

  async status({ signal = null } = {}) {
    const d = await this.client.request('GET', `/v1/jobs/${encodeURIComponent(this.id)}`,
      undefined, { signal });
    if (d.result) d.result = reviveTensors(d.result);
    this.last = d;
    return d;
  }

  // Polls until the job ends; resolves with its result, rejects with ProblemError when it
  // failed and with JobCancelled when it was cancelled. onProgress(fraction, doc) is called
  // after every poll.
  async wait({ poll = 200, onProgress = null, signal = null } = {}) {
    for (;;) {
      signal?.throwIfAborted();
      const d = await this.status({ signal });
      if (onProgress) onProgress(d.progress ?? 0, d);
      if (d.status === 'done') return d.result;
      if (d.status === 'cancelled') throw new JobCancelled(d);
      if (d.status === 'failed') {
        throw new ProblemError(d.error?.status || 500, d.error || { title: 'job failed' });
      }
      await sleep(poll, signal);
    }
  }

  cancel({ signal = null } = {}) {
    return this.client.request('DELETE', `/v1/jobs/${encodeURIComponent(this.id)}`, undefined,
      { signal });
  }
}

// ---- the client ----

export class Client {
  // baseUrl '' means the page's own origin. token: sent as Bearer (PUT/DELETE of models need
  // it when the daemon runs with --token-file). binary: tensors as safetensors (default true).
  constructor(baseUrl = '', { token = null, binary = true, retries = 3, fetch: f = null } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.token = token;
    this.binary = binary;
    this.retries = retries;
    this.fetch = f || globalThis.fetch.bind(globalThis);
  }

  async raw(method, path, { body = null, headers = {}, retries = this.retries, signal = null } = {}) {
    const h = { ...headers };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    for (let attempt = 0; ; attempt++) {
      let r;
      try {
        signal?.throwIfAborted();
        r = await this.fetch(this.baseUrl + path, { method, headers: h, body, signal });
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        const base = this.baseUrl || (globalThis.location ? globalThis.location.origin : '');
        throw new TypeError(`cannot reach reluregd at ${base} (${method} ${path}): ${e.message}`,
          { cause: e });
      }
      if (!r.ok) {
        const text = await r.text();
        let problem;
        try { problem = JSON.parse(text); } catch { problem = { title: r.statusText, detail: text }; }
        const after = r.headers.get('Retry-After');
        if (r.status === 503 && after !== null && attempt < retries &&
            problem.type !== '/problems/timeout') {
          const secs = Number(after);
          await sleep((Number.isFinite(secs) && secs >= 0 ? secs : 1) * 1000, signal);
          continue;
        }
        throw new ProblemError(r.status, problem);
      }
      return r;
    }
  }

  // Any route with an optional JSON body; answers JSON (tensors revived) or null for 204.
  async request(method, path, doc = undefined, { signal = null } = {}) {
    const init = { headers: { Accept: JSON_TYPE }, signal };
    if (doc !== undefined) {
      init.body = JSON.stringify(doc);
      init.headers['Content-Type'] = JSON_TYPE;
    }
    const r = await this.raw(method, path, init);
    if (r.status === 204) return null;
    return reviveTensors(await r.json());
  }

  static modelPath(name, suffix = '') {
    return `/v1/models/${encodeURIComponent(name)}${suffix}`;
  }

  // POST a compute route. `inputs` is a tensor; `doc` the other members. With
  // doc.async the answer is a Job.
  async compute(name, route, inputs, { signal = null, ...doc } = {}) {
    const path = Client.modelPath(name, `/${route}`);
    const x = asTensor(inputs);
    if (doc.async) {
      const d = await this.request('POST', path, { ...doc, inputs: jsonTensor(x) }, { signal });
      return new Job(this, d.job);
    }
    if (!this.binary) {
      return this.request('POST', path, { ...doc, inputs: jsonTensor(x) }, { signal });
    }
    const body = encodeSafetensors(
      { '/inputs': { dtype: 'F32', shape: x.shape, data: x.data } },
      { 'relureg.request': JSON.stringify(doc) });
    const r = await this.raw('POST', path, {
      body, headers: { 'Content-Type': ST_TYPE, Accept: ST_TYPE }, signal,
    });
    const type = r.headers.get('Content-Type') || '';
    if (!type.startsWith(ST_TYPE)) return reviveTensors(await r.json());
    const { metadata, tensors } = decodeSafetensors(await r.arrayBuffer());
    const out = JSON.parse(metadata['relureg.response'] || '{}');
    for (const [k, t] of Object.entries(tensors)) {
      const data = t.data instanceof BigInt64Array ? Array.from(t.data, Number) : t.data;
      pointerSet(out, k, { shape: t.shape, data });
    }
    return reviveTensors(out);
  }

  // ---- models ----
  models({ signal = null } = {}) { return this.request('GET', '/v1/models', undefined, { signal }); }
  model(name, { signal = null } = {}) {
    return this.request('GET', Client.modelPath(name), undefined, { signal });
  }
  // bytes: a model file (Uint8Array, ArrayBuffer or Blob, e.g. a dropped .safetensors File).
  async putModel(name, bytes, { signal = null } = {}) {
    const r = await this.raw('PUT', Client.modelPath(name), {
      body: bytes, headers: { 'Content-Type': ST_TYPE, Accept: JSON_TYPE }, signal,
    });
    return r.json();
  }
  deleteModel(name, { signal = null } = {}) {
    return this.request('DELETE', Client.modelPath(name), undefined, { signal });
  }
  async weights(name, { signal = null } = {}) {
    const r = await this.raw('GET', Client.modelPath(name, '/weights'), { signal });
    return new Uint8Array(await r.arrayBuffer());
  }

  // ---- health, datasets ----
  async ready({ signal = null } = {}) {
    try {
      await this.raw('GET', '/v1/health/ready',
        { headers: { Accept: JSON_TYPE }, retries: 0, signal });
      return true;
    } catch (e) { if (e instanceof ProblemError) return false; throw e; }
  }
  dataset(split = 'test', { offset = 0, limit = 16, signal = null } = {}) {
    return this.request('GET',
      `/v1/datasets/fashion-mnist/${split}?offset=${offset}&limit=${limit}`, undefined, { signal });
  }

  // ---- compute ----
  predict(name, inputs, opts = {}) { return this.compute(name, 'predict', inputs, opts); }
  jacobian(name, inputs, opts = {}) { return this.compute(name, 'jacobian', inputs, opts); }
  // regularizers: names or {name, ...options}; opts: gradients, reduction, version, async.
  regularizers(name, inputs, labels, regularizers = ['input_gradient'], opts = {}) {
    const regs = regularizers.map((r) => (typeof r === 'string' ? { name: r } : r));
    return this.compute(name, 'regularizers', inputs, { labels, regularizers: regs, ...opts });
  }
  connections(name, inputs, labels, opts = {}) {
    return this.compute(name, 'connections', inputs, { labels, ...opts });
  }
  // attack: {attack: 'pgd', norm, epsilon, steps, ...} (api.md /attacks).
  attack(name, inputs, labels, attack = { attack: 'pgd' }, opts = {}) {
    return this.compute(name, 'attacks', inputs, { labels, ...attack, ...opts });
  }
  certify(name, inputs, opts = {}) { return this.compute(name, 'certify', inputs, opts); }
  // opts: {norm, epsilons, attack: {attack: 'pgd', ...}, async}.
  robustness(name, inputs, labels, opts = {}) {
    return this.compute(name, 'robustness', inputs, { labels, ...opts });
  }
  job(id) { return new Job(this, id); }
}
