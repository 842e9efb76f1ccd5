// The ES module client (clients/js/relureg.js) against a live reluregd ($RELUREG_URL), in Node:
// JSON and binary transport agree, jobs report progress, errors carry problem+json.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Client, JobCancelled, ProblemError, tensor, encodeSafetensors, decodeSafetensors } from '../../clients/js/relureg.js';

const URL = process.env.RELUREG_URL;
const bin = new Client(URL);
const json = new Client(URL, { binary: false });

async function images(n) {
  const d = await json.dataset('test', { offset: 0, limit: n });
  assert.deepEqual(d.images.shape, [n, 1, 28, 28]);
  assert.equal(d.labels.length, n);
  return { x: tensor([n, 1, 28, 28], d.images.data), labels: d.labels };
}

test('models lists both models with their shapes', async () => {
  const { models } = await bin.models();
  const names = models.map((m) => m.name).sort();
  assert.deepEqual(names, ['fashion-mlp', 'random-cnn']);
  const m = await bin.model('fashion-mlp');
  assert.deepEqual(m.input_shape, [1, 28, 28]);
  assert.equal(m.num_classes, 10);
  assert.equal(m.class_names[9], 'Ankle boot');
});

test('safetensors encode/decode round trip', () => {
  const data = Float32Array.from([1.5, -2, 3.25, 0]);
  const buf = encodeSafetensors({ '/inputs': { dtype: 'F32', shape: [2, 2], data } }, { k: 'v' });
  const { metadata, tensors } = decodeSafetensors(buf);
  assert.equal(metadata.k, 'v');
  assert.deepEqual(tensors['/inputs'].shape, [2, 2]);
  assert.deepEqual(Array.from(tensors['/inputs'].data), Array.from(data));
});

test('predict: binary and JSON transport give the same answer, and the trained net is accurate', async () => {
  const { x, labels } = await images(64);
  const a = await bin.predict('fashion-mlp', x);
  const b = await json.predict('fashion-mlp', x);
  assert.deepEqual(a.logits.shape, [64, 10]);
  assert.deepEqual(Array.from(a.logits.data), Array.from(b.logits.data));
  assert.deepEqual(a.predictions, b.predictions);
  const right = labels.filter((y, i) => a.predictions[i] === y).length;
  assert.ok(right >= 40, `only ${right}/64 correct`);
});

test('regularizers with input and parameter gradients, binary vs JSON', async () => {
  const { x, labels } = await images(8);
  const regs = ['input_gradient', { name: 'jacobian', estimator: 'exact' }];
  const opts = { gradients: ['inputs', 'parameters'] };
  const a = await bin.regularizers('fashion-mlp', x, labels, regs, opts);
  const b = await json.regularizers('fashion-mlp', x, labels, regs, opts);
  assert.equal(a.regularizers.length, 2);
  for (let i = 0; i < 2; i++) {
    assert.equal(a.regularizers[i].value, b.regularizers[i].value);
    assert.deepEqual(a.regularizers[i].grad_inputs.shape, [8, 1, 28, 28]);
    assert.deepEqual(Array.from(a.regularizers[i].grad_inputs.data), Array.from(b.regularizers[i].grad_inputs.data));
    const ga = a.regularizers[i].grad_parameters, gb = b.regularizers[i].grad_parameters;
    assert.deepEqual(Object.keys(ga).sort(), ['1.bias', '1.weight', '3.bias', '3.weight']);
    assert.deepEqual(ga['1.weight'].shape, [128, 784]);
    assert.deepEqual(Array.from(ga['3.weight'].data), Array.from(gb['3.weight'].data));
  }
  assert.ok(a.regularizers[0].value > 0);
});

test('attack: PGD stays within epsilon and breaks some samples', async () => {
  const { x, labels } = await images(16);
  const r = await bin.attack('fashion-mlp', x, labels, { attack: 'pgd', norm: 'linf', epsilon: 0.1, steps: 20, step_size: 0.025 });
  assert.deepEqual(r.adversarial.shape, [16, 1, 28, 28]);
  for (const v of r.perturbation_norms.linf) assert.ok(v <= 0.1 * (1 + 1e-6));
  for (const v of r.adversarial.data) assert.ok(v >= 0 && v <= 1);
  assert.ok(r.success.filter(Boolean).length > 0);
});

test('async robustness job reports progress and a result', async () => {
  const { x, labels } = await images(32);
  const job = await bin.robustness('fashion-mlp', x, labels,
    { norm: 'linf', epsilons: [0.05, 0.1], attack: { attack: 'pgd', steps: 40 }, async: true });
  assert.match(job.id, /^[A-Za-z0-9._-]+$/);
  const seen = [];
  const report = await job.wait({ poll: 20, onProgress: (p) => seen.push(p) });
  assert.ok(seen.length >= 1 && seen.every((p) => p >= 0 && p <= 1));
  assert.equal(report.robust_accuracy.length, 2);
  assert.ok(report.robust_accuracy[1] <= report.robust_accuracy[0]);
  assert.ok(report.clean_accuracy >= report.robust_accuracy[0]);
  assert.equal(typeof report.flags.flagged, 'boolean');
});

test('errors are ProblemError with the problem+json document', async () => {
  await assert.rejects(bin.model('no-such-model'), (e) => {
    assert.ok(e instanceof ProblemError);
    assert.equal(e.status, 404);
    assert.match(e.detail, /no-such-model/);
    return true;
  });
  const bad = tensor([1, 783], new Float32Array(783));
  await assert.rejects(bin.predict('fashion-mlp', bad), (e) => {
    assert.ok(e instanceof ProblemError);
    assert.equal(e.status, 422);
    assert.equal(e.field, 'inputs');
    assert.match(e.detail, /783/);
    return true;
  });
  await assert.rejects(json.attack('fashion-mlp', tensor([1, 1, 28, 28], new Float32Array(784)), [0], { attack: 'nope' }),
    (e) => e.status === 422);
});

// A fetch that answers from a list: [status, headers, body] per call; records the calls.
function stubFetch(answers) {
  const calls = [];
  const f = async (url, init) => {
    calls.push({ url, init, t: Date.now() });
    const [status, headers, body] = answers[Math.min(calls.length - 1, answers.length - 1)];
    return new Response(JSON.stringify(body), { status, headers });
  };
  return { f, calls };
}

const busy = [503, { 'Content-Type': 'application/problem+json', 'Retry-After': '0' },
  { type: '/problems/queue-full', title: 'Compute queue full', status: 503, detail: 'busy' }];

test('503 retries follow the Python client: only with Retry-After, not timeouts, 3 times', async () => {
  let s = stubFetch([busy, busy, [200, { 'Content-Type': 'application/json' }, { models: [] }]]);
  assert.deepEqual(await new Client('http://stub', { fetch: s.f }).models(), { models: [] });
  assert.equal(s.calls.length, 3, 'two 503s retried');
  s = stubFetch([busy]);
  await assert.rejects(new Client('http://stub', { fetch: s.f }).models(), (e) => e.status === 503);
  assert.equal(s.calls.length, 4, 'the first try and 3 retries (retries defaults to 3)');
  const noHeader = [503, { 'Content-Type': 'application/problem+json' }, busy[2]];
  s = stubFetch([noHeader, [200, {}, { models: [] }]]);
  await assert.rejects(new Client('http://stub', { fetch: s.f }).models(), (e) => e.status === 503);
  assert.equal(s.calls.length, 1, 'a 503 without Retry-After is not retried');
  const timeout = [503, { 'Retry-After': '0' }, { type: '/problems/timeout', status: 503, title: 'Computation timed out' }];
  s = stubFetch([timeout, [200, {}, { models: [] }]]);
  await assert.rejects(new Client('http://stub', { fetch: s.f }).models(), (e) => e.type === '/problems/timeout');
  assert.equal(s.calls.length, 1, 'a timed-out computation is not retried');
  const slow = [503, { 'Retry-After': '1' }, busy[2]];
  s = stubFetch([slow, [200, {}, { models: [] }]]);
  await new Client('http://stub', { fetch: s.f }).models();
  assert.ok(s.calls[1].t - s.calls[0].t >= 950, 'waited Retry-After seconds');
});

test('a cancelled job rejects with JobCancelled, as in Python', async () => {
  const s = stubFetch([[200, {}, { job: 'j1', status: 'cancelled', progress: 0.5 }]]);
  await assert.rejects(new Client('http://stub', { fetch: s.f }).job('j1').wait({ poll: 1 }), (e) => {
    assert.ok(e instanceof JobCancelled);
    assert.ok(!(e instanceof ProblemError));
    assert.equal(e.job.status, 'cancelled');
    assert.match(e.message, /job j1 was cancelled/);
    return true;
  });
  // and for real: a long robustness job, cancelled at once
  const { x, labels } = await images(64);
  const job = await bin.robustness('random-cnn', x, labels, {
    norm: 'linf', epsilons: [0.01, 0.02, 0.05, 0.1, 0.2],
    attack: { attack: 'pgd', steps: 1000, restarts: 10 }, async: true });
  await job.cancel();
  await assert.rejects(job.wait({ poll: 20 }), (e) => e instanceof JobCancelled);
});

test('an AbortSignal stops a call: before it starts, in flight, and between job polls', async () => {
  const isAbort = (e) => e instanceof Error && e.name === 'AbortError';
  // The signal is an option of the call, not a member of the request: a live signal changes
  // nothing in either transport.
  const { x, labels } = await images(4);
  const live = new AbortController();
  const a = await bin.predict('fashion-mlp', x, { signal: live.signal });
  const b = await json.predict('fashion-mlp', x, { signal: live.signal });
  assert.deepEqual(Array.from(a.logits.data), Array.from(b.logits.data));
  // Aborted before the call.
  const before = new AbortController();
  before.abort();
  await assert.rejects(bin.models({ signal: before.signal }), isAbort);
  // In flight: a long attack on the CNN, aborted after 100 ms, rejects well before it ends.
  const big = await images(64);
  const inflight = new AbortController();
  const t0 = Date.now();
  setTimeout(() => inflight.abort(), 100);
  await assert.rejects(bin.attack('random-cnn', big.x, big.labels,
    { attack: 'pgd', norm: 'linf', epsilon: 0.1, steps: 5000 }, { signal: inflight.signal }), isAbort);
  assert.ok(Date.now() - t0 < 3000, `aborted after ${Date.now() - t0} ms`);
  // Between polls of Job.wait (the job itself goes on until cancelled).
  const job = await bin.robustness('random-cnn', big.x, big.labels, {
    norm: 'linf', epsilons: [0.05, 0.1], attack: { attack: 'pgd', steps: 1000, restarts: 10 },
    async: true });
  const polling = new AbortController();
  setTimeout(() => polling.abort(), 150);
  await assert.rejects(job.wait({ poll: 50, signal: polling.signal }), isAbort);
  await job.cancel();
  await assert.rejects(job.wait({ poll: 20 }), (e) => e instanceof JobCancelled);
  // A 503 retry wait is cut short too.
  const s = stubFetch([[503, { 'Retry-After': '30' }, { title: 'busy' }]]);
  const waiting = new AbortController();
  setTimeout(() => waiting.abort(), 100);
  const t1 = Date.now();
  await assert.rejects(new Client('http://stub', { fetch: s.f }).models({ signal: waiting.signal }), isAbort);
  assert.ok(Date.now() - t1 < 3000, 'the Retry-After wait was not aborted');
  // And the daemon still serves.
  assert.ok(await bin.ready());
});

test('an unreachable daemon is named in the error', async () => {
  await assert.rejects(new Client('http://127.0.0.1:9').models(), (e) => {
    assert.match(e.message, /cannot reach reluregd at http:\/\/127\.0\.0\.1:9 \(GET \/v1\/models\)/);
    return true;
  });
});
