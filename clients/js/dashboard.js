// The dashboard reluregd serves at `/`: models and their metadata, a Fashion-MNIST test-image
// picker, regularizer values and the connection quantities, adversarial images beside the
// originals with their perturbation, robustness curves and certified-radius histograms, and
// progress bars for the long jobs, and model upload by dropping a .safetensors file on the page.
// Everything goes through the ES module client (relureg.js).
import { Client, ProblemError, tensor } from './relureg.js';

const rr = new Client();
const $ = (s) => document.querySelector(s);
const el = (tag, props = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of kids) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
const SVG = 'http://www.w3.org/2000/svg';
const svg = (tag, attrs = {}, text = null) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  return e;
};
const fmt = (v, d = 4) => (v === null || v === undefined ? '—' :
  typeof v === 'number' ? (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : v.toFixed(d)) : String(v));

const state = {
  models: [],
  model: null,        // the selected model's full document (GET /v1/models/{name})
  offset: 0,
  images: null,       // {shape, data} [16, 1, 28, 28]
  labels: [],
  classNames: [],
  off: new Set(),     // indices left out of the batch
  runs: [],           // robustness reports, for the curve
};

function setStatus(id, msg, error = false) {
  const p = $(id);
  p.textContent = msg;
  p.classList.toggle('error', error);
}

function explain(e) {
  if (e instanceof ProblemError) return `${e.status} ${e.title || ''}: ${e.detail || ''}`;
  return String(e && e.message ? e.message : e);
}

// ---- health and models ----

async function health() {
  const ok = await rr.ready().catch(() => false);
  const h = $('#health');
  h.textContent = ok ? 'ready' : 'not ready';
  h.className = `pill ${ok ? 'ok' : 'bad'}`;
}

async function loadModels() {
  try {
    const { models } = await rr.models();
    state.models = models;
    const body = $('#models tbody');
    body.replaceChildren();
    for (const m of models) {
      const tr = el('tr', { dataset: { model: m.name }, onclick: () => selectModel(m.name) },
        el('td', {}, m.name), el('td', {}, m.version), el('td', {}, JSON.stringify(m.input_shape)),
        el('td', {}, m.num_classes), el('td', {}, m.parameter_count.toLocaleString('en')),
        el('td', {}, m.loaded_at));
      body.append(tr);
    }
    setStatus('#models-status', models.length ? `${models.length} model(s) loaded` :
      'no model loaded: PUT one (see the curl cookbook) or start reluregd with --models-dir');
    if (models.length && !state.model) await selectModel(models[0].name);
  } catch (e) {
    setStatus('#models-status', explain(e), true);
  }
}

function summarizeLayers(arch) {
  const layers = arch && (arch.layers || arch);
  if (!Array.isArray(layers)) return JSON.stringify(arch, null, 1);
  return layers.map((l, i) => {
    const { type, ...rest } = l;
    const opts = Object.entries(rest).filter(([k]) => k !== 'body')
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
    return `${String(i).padStart(2)}  ${type} ${opts}${l.body ? `  (residual, ${l.body.length} layers)` : ''}`;
  }).join('\n');
}

async function selectModel(name) {
  try {
    state.model = await rr.model(name);
    for (const tr of document.querySelectorAll('#models tbody tr')) {
      tr.classList.toggle('selected', tr.dataset.model === name);
    }
    const m = state.model;
    const meta = m.metadata || {};
    // Objects (relureg.training: the trainer's options and per-epoch history) in a wrapping,
    // scrolling block, so that a long one stays inside its card.
    const rows = Object.entries(meta).map(([k, v]) =>
      el('tr', {}, el('th', {}, k), el('td', {}, typeof v === 'object' ?
        el('pre', { class: 'json' }, JSON.stringify(v, null, 1)) : v)));
    $('#model-detail').replaceChildren(
      el('h3', {}, `${m.name} v${m.version}`),
      el('p', { class: 'hint' }, `input ${JSON.stringify(m.input_shape)}` +
        (m.input_range ? `, range [${m.input_range}]` : '') + ` · ${m.num_classes} classes · ` +
        `${(m.parameter_count ?? 0).toLocaleString('en')} parameters · content ${String(m.content_hash || '').slice(0, 16)}`),
      el('pre', { class: 'layers' }, summarizeLayers(m.architecture)),
      rows.length ? el('table', { id: 'metadata' }, el('tbody', {}, ...rows)) : '');
    const fits = batchShape(1) !== null;
    for (const b of document.querySelectorAll('#predict, #run-regularizers, #run-attack, #run-robustness')) b.disabled = !fits;
    if (!fits) setStatus('#images-status', `model ${m.name} takes ${JSON.stringify(m.input_shape)}, not a 28×28 image`, true);
    else setStatus('#images-status', '');
  } catch (e) {
    setStatus('#models-status', explain(e), true);
  }
}

// The model's input shape for a batch of n images, or null if it is not a 784-pixel input.
function batchShape(n) {
  const s = state.model && state.model.input_shape;
  if (!s || s.reduce((a, b) => a * b, 1) !== 784) return null;
  return [n, ...s];
}

// ---- images ----

function drawImage(canvas, data, off = 0, { diverging = false, scale = 1 } = {}) {
  canvas.width = 28;
  canvas.height = 28;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = data[off + i];
    let r, g, b;
    if (diverging) { // red positive, blue negative, white 0
      const t = Math.max(-1, Math.min(1, v * scale));
      r = t < 0 ? 255 * (1 + t) : 255;
      g = 255 * (1 - Math.abs(t));
      b = t > 0 ? 255 * (1 - t) : 255;
    } else {
      r = g = b = 255 * (1 - Math.max(0, Math.min(1, v)));
    }
    img.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

async function loadImages() {
  try {
    const d = await rr.dataset('test', { offset: state.offset, limit: 16 });
    state.images = d.images;
    state.labels = d.labels;
    state.classNames = d.class_names || [];
    state.off.clear();
    $('#offset').textContent = state.offset;
    $('#offset-end').textContent = state.offset + d.labels.length - 1;
    const grid = $('#images');
    grid.replaceChildren();
    d.labels.forEach((y, i) => {
      const tile = el('div', { class: 'tile', dataset: { index: i } },
        drawImage(el('canvas'), d.images.data, 784 * i),
        el('div', {}, state.classNames[y] ?? y), el('div', { class: 'pred' }, ''));
      tile.addEventListener('click', () => {
        if (state.off.has(i)) state.off.delete(i); else state.off.add(i);
        tile.classList.toggle('off', state.off.has(i));
      });
      grid.append(tile);
    });
    setStatus('#images-status', state.model && batchShape(1) === null ? $('#images-status').textContent : '');
  } catch (e) {
    setStatus('#images-status', explain(e), true);
  }
}

// The selected images as a batch: {x, labels, index} (index: positions in the page).
function batch() {
  const index = state.labels.map((_, i) => i).filter((i) => !state.off.has(i));
  const x = new Float32Array(784 * index.length);
  index.forEach((i, k) => x.set(state.images.data.subarray(784 * i, 784 * (i + 1)), 784 * k));
  return { x: tensor(batchShape(index.length), x), labels: index.map((i) => state.labels[i]), index };
}

const className = (k) => state.classNames[k] ?? String(k);

async function predict() {
  const { x, index } = batch();
  if (!index.length) return setStatus('#images-status', 'no image selected', true);
  try {
    const r = await rr.predict(state.model.name, x);
    const tiles = document.querySelectorAll('#images .tile');
    index.forEach((i, k) => {
      const p = r.predictions[k];
      const prob = r.probabilities.data[k * state.model.num_classes + p];
      tiles[i].querySelector('.pred').textContent = `→ ${className(p)} ${(100 * prob).toFixed(0)}%`;
      tiles[i].classList.toggle('wrong', p !== state.labels[i]);
    });
    const right = index.filter((i, k) => r.predictions[k] === state.labels[i]).length;
    setStatus('#images-status', `${right}/${index.length} correct · ${fmt(r.elapsed_ms, 1)} ms`);
  } catch (e) {
    setStatus('#images-status', explain(e), true);
  }
}

// ---- regularizers and connections ----

// The q-quantile of numbers (linear interpolation between order statistics; ±Infinity allowed).
function quantile(nums, q) {
  const a = [...nums].sort((x, y) => x - y);
  const pos = (a.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
  if (lo === hi || !Number.isFinite(a[lo]) || !Number.isFinite(a[hi])) return a[Math.round(pos)];
  return a[lo] + (a[hi] - a[lo]) * (pos - lo);
}

const REGULARIZERS = [
  { name: 'cross_entropy' },
  { name: 'input_gradient' },
  { name: 'jacobian', estimator: 'exact' },
  { name: 'cross_lipschitz' },
  { name: 'curvature', method: 'finite_difference', h: 1.5 },
  { name: 'curvature', method: 'hessian', h: 1.5 },
  { name: 'curvature', method: 'trace' },
  { name: 'weight_decay' },
];

async function runRegularizers() {
  const { x, labels, index } = batch();
  if (!index.length) return setStatus('#regularizers-status', 'no image selected', true);
  setStatus('#regularizers-status', 'computing…');
  try {
    const [r, c] = await Promise.all([
      rr.regularizers(state.model.name, x, labels, REGULARIZERS),
      rr.connections(state.model.name, x, labels),
    ]);
    $('#regularizers tbody').replaceChildren(...r.regularizers.map((g) => {
      const opts = Object.entries(g).filter(([k]) => ['estimator', 'method', 'h'].includes(k))
        .map(([k, v]) => `${k}=${v}`).join(', ');
      return el('tr', {}, el('td', {}, g.name + (opts ? ` (${opts})` : '')), el('td', {}, fmt(g.value)));
    }));
    // Per quantity: median, 10th and 90th percentiles and max over the samples (ratios such as
    // curvature_ratio have a few huge values near decision boundaries; a mean would show those).
    const rows = [];
    const perSample = [];
    for (const [k, v] of Object.entries(c)) {
      if (!Array.isArray(v) || v.length !== index.length ||
          typeof v[0] !== 'number' && v[0] !== null && typeof v[0] !== 'boolean') continue;
      perSample.push([k, v]);
      const nums = v.map((u) => (u === null ? Infinity : Number(u))).filter((u) => !Number.isNaN(u));
      if (!nums.length) continue;
      rows.push(el('tr', { dataset: { quantity: k } }, el('td', {}, k),
        el('td', {}, fmt(quantile(nums, 0.5))), el('td', {}, fmt(quantile(nums, 0.1))),
        el('td', {}, fmt(quantile(nums, 0.9))), el('td', {}, fmt(Math.max(...nums)))));
    }
    $('#connections tbody').replaceChildren(...rows);
    $('#connections-per-sample thead').replaceChildren(el('tr', {}, el('th', {}, 'image'),
      el('th', {}, 'label'), ...perSample.map(([k]) => el('th', {}, k))));
    $('#connections-per-sample tbody').replaceChildren(...index.map((i, b) => el('tr', {},
      el('td', {}, state.offset + i), el('td', {}, className(labels[b])),
      ...perSample.map(([, v]) => el('td', {}, typeof v[b] === 'boolean' ? (v[b] ? 'yes' : 'no') :
        v[b] === null ? '∞' : fmt(v[b]))))));
    setStatus('#regularizers-status', `${index.length} samples · loss ${fmt(r.loss.value)} · ` +
      `${fmt(r.elapsed_ms, 1)} ms + ${fmt(c.elapsed_ms, 1)} ms`);
  } catch (e) {
    setStatus('#regularizers-status', explain(e), true);
  }
}

// ---- attacks ----

async function runAttack(ev) {
  ev.preventDefault();
  const f = new FormData($('#attack-form'));
  const { x, labels, index } = batch();
  if (!index.length) return setStatus('#attack-status', 'no image selected', true);
  const [name, suite] = String(f.get('attack')).split(':');
  const attack = { attack: name, seed: Number(f.get('seed')) };
  if (suite) attack.suite = suite;
  const bounded = ['pgd', 'fgsm', 'bim', 'apgd_ce', 'apgd_t', 'square', 'autoattack'];
  if ([...bounded, 'deepfool', 'fab_t'].includes(attack.attack)) attack.norm = f.get('norm');
  if (bounded.includes(attack.attack)) attack.epsilon = Number(f.get('epsilon'));
  if (['pgd', 'bim', 'apgd_ce', 'apgd_t', 'fab_t'].includes(attack.attack)) attack.steps = Number(f.get('steps'));
  if (['pgd', 'bim'].includes(attack.attack)) attack.step_size = attack.epsilon / 4;
  const out = $('#attack-result');
  out.dataset.state = 'running';
  out.replaceChildren();
  setStatus('#attack-status', `running ${suite ? `${name} (${suite})` : name}…`);
  try {
    const r = await rr.attack(state.model.name, x, labels, attack);
    const adv = r.adversarial.data;
    let amax = 0;
    for (let i = 0; i < adv.length; i++) amax = Math.max(amax, Math.abs(adv[i] - x.data[i]));
    const scale = amax > 0 ? 1 / amax : 1;
    index.forEach((_, k) => {
      const delta = new Float32Array(784);
      for (let i = 0; i < 784; i++) delta[i] = adv[784 * k + i] - x.data[784 * k + i];
      out.append(el('div', { class: `case${r.success[k] ? ' broken' : ''}`, dataset: { success: r.success[k] } },
        el('div', {}, drawImage(el('canvas'), x.data, 784 * k), `original: ${className(labels[k])}`),
        el('div', {}, drawImage(el('canvas'), adv, 784 * k), `adversarial: ${className(r.predictions[k])}`),
        el('div', {}, drawImage(el('canvas'), delta, 0, { diverging: true, scale }), `perturbation ×${fmt(scale, 1)}`),
        el('div', { class: 'info' }, `‖δ‖₂ ${fmt(r.perturbation_norms.l2[k], 3)} · ‖δ‖∞ ${fmt(r.perturbation_norms.linf[k], 3)}` +
          ` · ${r.success[k] ? 'broken' : 'robust'}` +
          (r.broken_by && r.broken_by[k] ? ` by ${r.broken_by[k]}` : ''))));
    });
    const broken = r.success.filter(Boolean).length;
    out.dataset.state = 'done';
    const what = suite ? `${name} (${suite})` : name;
    setStatus('#attack-status', `${what}: ${broken}/${index.length} broken · ${fmt(r.elapsed_ms, 1)} ms`);
  } catch (e) {
    out.dataset.state = 'error';
    setStatus('#attack-status', explain(e), true);
  }
}

// ---- robustness: async job with a progress bar, curve and histogram ----

function jobBar(label) {
  const bar = el('div');
  const text = el('span', {}, '0%');
  const row = el('div', { class: 'job' }, el('span', {}, label), el('div', { class: 'progress' }, bar), text);
  $('#jobs').prepend(row);
  return {
    row,
    set(f, status) { bar.style.width = `${(100 * f).toFixed(1)}%`; text.textContent = `${status} ${(100 * f).toFixed(0)}%`; },
  };
}

const PALETTE = ['#2f6fde', '#d9480f', '#2b8a3e', '#862e9c', '#e67700', '#0b7285'];

function drawCurve() {
  const W = 460, H = 260, L = 44, R = 12, T = 12, B = 36;
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, id: 'curve-svg' });
  const runs = state.runs;
  const emax = Math.max(...runs.flatMap((r) => r.epsilons), 1e-9);
  const X = (e) => L + (W - L - R) * e / emax;
  const Y = (a) => T + (H - T - B) * (1 - a);
  for (let a = 0; a <= 1.0001; a += 0.25) {
    s.append(svg('line', { x1: L, x2: W - R, y1: Y(a), y2: Y(a), stroke: '#e6e8ec' }));
    s.append(svg('text', { x: L - 6, y: Y(a) + 4, 'text-anchor': 'end' }, `${(100 * a).toFixed(0)}%`));
  }
  for (const e of [0, ...new Set(runs.flatMap((r) => r.epsilons))]) {
    s.append(svg('text', { x: X(e), y: H - B + 16, 'text-anchor': 'middle' }, String(e)));
  }
  s.append(svg('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, 'ε'));
  runs.forEach((r, i) => {
    const c = PALETTE[i % PALETTE.length];
    const pts = [[0, r.clean_accuracy], ...r.epsilons.map((e, k) => [e, r.robust_accuracy[k]])];
    s.append(svg('polyline', { points: pts.map(([e, a]) => `${X(e)},${Y(a)}`).join(' '), fill: 'none', stroke: c, 'stroke-width': 2, class: 'series' }));
    for (const [e, a] of pts) s.append(svg('circle', { cx: X(e), cy: Y(a), r: 3, fill: c }));
    s.append(svg('text', { x: W - R - 4, y: T + 14 + 14 * i, 'text-anchor': 'end', fill: c, style: `fill:${c}` }, r.label));
  });
  $('#curve').replaceChildren(s);
  // Runs on different numbers of images (or different images) are not directly comparable.
  const sizes = [...new Set(runs.map((r) => r.n))];
  const offsets = [...new Set(runs.map((r) => r.offset))];
  const note = $('#curve-note');
  note.textContent = sizes.length > 1 || offsets.length > 1 ?
    `note: these runs differ in size (${runs.map((r) => `${r.label}: ${r.n} images from ${r.offset}`).join('; ')}); ` +
    'their accuracies are not directly comparable' : runs.length ? `each run: ${sizes[0]} images` : '';
  note.classList.toggle('flag', sizes.length > 1 || offsets.length > 1);
}

function drawHistogram(radii, norm) {
  const W = 460, H = 260, L = 40, R = 12, T = 12, B = 36, bins = 12;
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, id: 'histogram-svg' });
  const finite = radii.filter((r) => r !== null && Number.isFinite(r));
  const infinite = radii.length - finite.length;
  const hi = Math.max(...finite, 1e-6);
  const counts = new Array(bins).fill(0);
  for (const r of finite) counts[Math.min(bins - 1, Math.floor(bins * r / hi))]++;
  const cmax = Math.max(...counts, 1);
  const bw = (W - L - R) / bins;
  counts.forEach((c, i) => {
    const h = (H - T - B) * c / cmax;
    s.append(svg('rect', { x: L + i * bw + 1, y: H - B - h, width: bw - 2, height: h, fill: '#2f6fde', class: 'bar' }));
    if (c) s.append(svg('text', { x: L + (i + 0.5) * bw, y: H - B - h - 3, 'text-anchor': 'middle' }, String(c)));
  });
  for (const t of [0, hi / 2, hi]) {
    const anchor = t === 0 ? 'start' : t === hi ? 'end' : 'middle';
    s.append(svg('text', { x: L + (W - L - R) * t / hi, y: H - B + 16, 'text-anchor': anchor }, fmt(t, 3)));
  }
  s.append(svg('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' },
    `certified ${norm} radius (${finite.length} samples${infinite ? `, ${infinite} unbounded` : ''})`));
  $('#histogram').replaceChildren(s);
}

function flagText(f) {
  if (!f.flagged) return 'none';
  const out = [];
  if (f.zero_gradient_fraction > 0.1) out.push(`zero gradients ${(100 * f.zero_gradient_fraction).toFixed(0)}%`);
  if (f.nonfinite_gradient_fraction > 0.1) out.push(`non-finite gradients ${(100 * f.nonfinite_gradient_fraction).toFixed(0)}%`);
  if (f.black_box_only) out.push(`${f.black_box_only} broken by square only`);
  if (f.non_monotone) out.push('accuracy rises with ε');
  if (f.certified_broken) out.push(`${f.certified_broken} certified samples broken (bug)`);
  return `gradient masking? ${out.join(', ')}`;
}

// Robust accuracy per (model, norm) row and attack column: AutoAttack beside PGD.
function drawComparison() {
  const cols = [...new Set(state.runs.map((r) => r.what))];
  const rows = [...new Set(state.runs.map((r) => `${r.model}|${r.norm}`))];
  $('#comparison thead').replaceChildren(el('tr', {}, el('th', {}, 'model'), el('th', {}, 'norm'),
    ...cols.map((c) => el('th', {}, c))));
  $('#comparison tbody').replaceChildren(...rows.map((key) => {
    const [model, norm] = key.split('|');
    return el('tr', {}, el('td', {}, model), el('td', {}, norm), ...cols.map((c) => {
      const r = [...state.runs].reverse().find((x) => x.model === model && x.norm === norm && x.what === c);
      if (!r) return el('td', {}, '—');
      const txt = r.epsilons.map((e, k) => `${e}: ${(100 * r.robust_accuracy[k]).toFixed(1)}%`).join(' · ');
      return el('td', r.flags && r.flags.flagged ? { class: 'flag', title: 'gradient-masking flags raised' } : {}, txt);
    }));
  }));
}

async function runRobustness(ev) {
  ev.preventDefault();
  const f = new FormData($('#robustness-form'));
  const count = Math.max(1, Math.min(256, Number(f.get('count'))));
  const epsilons = String(f.get('epsilons')).split(/[,\s]+/).filter(Boolean).map(Number);
  const norm = f.get('norm');
  const [name, suite] = String(f.get('attack')).split(':');
  const attack = { attack: name, seed: 0 };
  if (suite) attack.suite = suite;
  if (['pgd', 'bim'].includes(name)) attack.steps = 40;
  const model = state.model.name;
  const what = suite ? `${name} ${suite}` : name === 'pgd' || name === 'bim' ? `${name}-40` : name;
  const label = `${model} · ${what} · ${norm}`;
  const bar = jobBar(label);
  setStatus('#robustness-status', `evaluating ${count} images…`);
  $('#robustness-section').dataset.state = 'running';
  try {
    const d = await rr.dataset('test', { offset: state.offset, limit: count });
    const x = tensor(batchShape(d.labels.length), d.images.data);
    const job = await rr.robustness(model, x, d.labels, { norm, epsilons, attack, async: true });
    bar.row.dataset.job = job.id;
    const [report, cert] = await Promise.all([
      job.wait({ poll: 150, onProgress: (p, doc) => bar.set(p, doc.status) }),
      rr.certify(model, x, { labels: d.labels, norm }),
    ]);
    bar.set(1, 'done');
    state.runs.push({ ...report, epsilons, label: `${label} (n=${d.labels.length})`, model, what, norm,
      n: d.labels.length, offset: state.offset });
    drawCurve();
    drawComparison();
    drawHistogram(cert.certified_radius, norm);
    const flags = report.flags || {};
    $('#robustness-table tbody').append(el('tr', {}, el('td', {}, model), el('td', {}, what),
      el('td', {}, norm), el('td', {}, `${(100 * report.clean_accuracy).toFixed(1)}%`),
      el('td', {}, `${d.labels.length} from ${state.offset}`),
      el('td', {}, epsilons.map((e, k) => `${e}: ${(100 * report.robust_accuracy[k]).toFixed(1)}%`).join(' · ')),
      el('td', {}, fmt(report.deepfool_rho)), el('td', {}, fmt(report.mean_certified_radius)),
      el('td', flags.flagged ? { class: 'flag' } : {}, flagText(flags))));
    if (report.broken_by) {
      const counts = {};
      for (const b of report.broken_by) if (b) counts[b] = (counts[b] || 0) + 1;
      $('#robustness-table tbody').append(el('tr', {}, el('td', { colspan: 9, class: 'hint' },
        'broken by: ' + (Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(' · ') || 'none'))));
    }
    setStatus('#robustness-status', `${label}: clean ${(100 * report.clean_accuracy).toFixed(1)}% on ${d.labels.length} images`);
    $('#robustness-section').dataset.state = 'done';
  } catch (e) {
    bar.set(0, 'failed');
    $('#robustness-section').dataset.state = 'error';
    setStatus('#robustness-status', explain(e), true);
  }
}

// ---- model upload: drop a .safetensors file on the page ----

// A model name from a file name: its stem, with characters a name may not hold replaced.
function modelName(file) {
  const stem = file.name.replace(/\.safetensors$/i, '').replace(/[^A-Za-z0-9._-]/g, '-');
  return (/^[A-Za-z0-9]/.test(stem) ? stem : `m${stem}`).slice(0, 64);
}

async function upload(file) {
  if (!/\.safetensors$/i.test(file.name)) {
    return setStatus('#upload-status', `${file.name} is not a .safetensors file: write one with ` +
      'relureg.export(model, input_shape, path) (clients/python)', true);
  }
  const name = modelName(file);
  rr.token = $('#token').value.trim() || null;
  setStatus('#upload-status', `uploading ${file.name} as ${name}…`);
  try {
    const r = await rr.putModel(name, await file.arrayBuffer());
    setStatus('#upload-status', `${name} ${r.created ? 'created' : 'replaced'}: version ${r.version}, ` +
      `${(r.parameter_count ?? 0).toLocaleString('en')} parameters`);
    $('#upload').dataset.uploaded = name;
    await loadModels();
    await selectModel(name);
  } catch (e) {
    const hint = e instanceof ProblemError && e.status === 401 ?
      ' — this server needs its bearer token (reluregd --token-file): enter it in the token field and drop the file again' : '';
    setStatus('#upload-status', explain(e) + hint, true);
  }
}

document.addEventListener('dragover', (ev) => {
  if (![...(ev.dataTransfer?.types || [])].includes('Files')) return;
  ev.preventDefault();
  document.body.classList.add('dragging');
});
document.addEventListener('dragleave', (ev) => { if (!ev.relatedTarget) document.body.classList.remove('dragging'); });
document.addEventListener('drop', (ev) => {
  const files = ev.dataTransfer?.files;
  if (!files || !files.length) return;
  ev.preventDefault();
  document.body.classList.remove('dragging');
  upload(files[0]);
});
$('#upload-file').addEventListener('change', (ev) => { if (ev.target.files.length) upload(ev.target.files[0]); });

// ---- wiring ----

$('#prev').addEventListener('click', () => { state.offset = Math.max(0, state.offset - 16); loadImages(); });
$('#next').addEventListener('click', () => { state.offset += 16; loadImages(); });
$('#predict').addEventListener('click', predict);
$('#run-regularizers').addEventListener('click', runRegularizers);
$('#attack-form').addEventListener('submit', runAttack);
$('#robustness-form').addEventListener('submit', runRobustness);

await health();
await Promise.all([loadModels(), loadImages()]);
document.body.dataset.ready = 'true';
setInterval(health, 10000);
