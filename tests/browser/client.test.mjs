// The ES module client (clients/js/relureg.js) against a live reluregd ($RELUREG_URL), in Node:
// JSON and binary transport agree, jobs report progress, errors carry problem+json.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Client, ProblemError, tensor, encodeSafetensors, decodeSafetensors } from '../../clients/js/relureg.js';

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
