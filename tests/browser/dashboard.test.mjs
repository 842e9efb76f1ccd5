// The dashboard in headless Chromium against a live reluregd ($RELUREG_URL): the page loads,
// lists the models, shows the test images and predictions, computes regularizers, runs an
// attack and a robustness job (progress bar, curve, certified-radius histogram) and shows
// their results. Screenshots go to $BROWSER_OUT.
//
// Debian's Chromium through playwright-core (pinned in package-lock.json; never
// `npx playwright install`), with --no-sandbox because the tests run as root.
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { chromium } from 'playwright-core';

const URL = process.env.RELUREG_URL;
const TOKEN = process.env.RELUREG_TOKEN;
const OUT = process.env.BROWSER_OUT || '.';

let browser, page;
const errors = [];

test.before(async () => {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(URL + '/');
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
});

test.after(async () => {
  if (page) await page.screenshot({ path: path.join(OUT, 'dashboard.png'), fullPage: true });
  if (browser) await browser.close();
});

test('the page loads and lists the models with their metadata', async () => {
  assert.equal(await page.title(), 'relureg dashboard');
  assert.equal(await page.textContent('#health'), 'ready');
  const names = await page.$$eval('#models tbody tr td:first-child', (tds) => tds.map((t) => t.textContent).sort());
  assert.deepEqual(names, ['fashion-mlp', 'random-cnn']);
  await page.click('#models tbody tr[data-model="fashion-mlp"]');
  await page.waitForSelector('#model-detail h3:has-text("fashion-mlp")');
  const detail = await page.textContent('#model-detail');
  assert.match(detail, /linear/);
  assert.match(detail, /fashion-mnist \(6000 training images\)/);
});

test('the image picker shows 16 test images; predictions are mostly right', async () => {
  assert.equal(await page.locator('#images .tile canvas').count(), 16);
  // The first test image is an ankle boot (label 9), as the dataset route says.
  assert.match(await page.textContent('#images .tile:first-child'), /Ankle boot/);
  await page.click('#predict');
  await page.waitForSelector('#images-status:has-text("correct")');
  const status = await page.textContent('#images-status');
  const right = Number(status.match(/(\d+)\/16 correct/)[1]);
  assert.ok(right >= 10, status);
  // The first canvas shows the first test image: every pixel is 255·(1 − value), opaque.
  const worst = await page.$eval('#images .tile canvas', async (c) => {
    const d = c.getContext('2d').getImageData(0, 0, 28, 28).data;
    const r = await (await fetch('/v1/datasets/fashion-mnist/test?offset=0&limit=1')).json();
    let err = 0;
    r.images.data.forEach((v, i) => {
      err = Math.max(err, Math.abs(d[4 * i] - 255 * (1 - v)), 255 - d[4 * i + 3]);
    });
    return err;
  });
  assert.ok(worst <= 1, `canvas differs from the image by ${worst}`);
});

test('regularizers and connection quantities are shown', async () => {
  await page.click('#run-regularizers');
  await page.waitForSelector('#regularizers-status:has-text("samples")', { timeout: 20000 });
  const rows = await page.$$eval('#regularizers tbody tr', (trs) => trs.map((t) => [...t.children].map((c) => c.textContent)));
  assert.equal(rows.length, 8);
  const ig = rows.find((r) => r[0] === 'input_gradient');
  assert.ok(ig && Number(ig[1]) > 0, JSON.stringify(rows));
  const conn = await page.$$eval('#connections tbody td:first-child', (tds) => tds.map((t) => t.textContent));
  for (const k of ['jacobian_fro2', 'input_gradient_norm2', 'hessian_trace', 'curvature_ratio']) assert.ok(conn.includes(k), k);
});

test('an attack runs and shows adversarial images beside the originals', async () => {
  await page.selectOption('#attack-form select[name=attack]', 'pgd');
  await page.fill('#attack-form input[name=epsilon]', '0.1');
  await page.fill('#attack-form input[name=steps]', '20');
  await page.click('#run-attack');
  await page.waitForSelector('#attack-result[data-state="done"]', { timeout: 30000 });
  const cases = page.locator('#attack-result .case');
  assert.equal(await cases.count(), 16);
  assert.equal(await page.locator('#attack-result .case canvas').count(), 48);
  const status = await page.textContent('#attack-status');
  const broken = Number(status.match(/(\d+)\/16 broken/)[1]);
  assert.ok(broken >= 1, status);
  assert.equal(await page.locator('#attack-result .case.broken').count(), broken);
  await page.locator('#attack-section').screenshot({ path: path.join(OUT, 'attack.png') });
});

test('a robustness job shows its progress bar, the curve and the certified-radius histogram', async () => {
  await page.fill('#robustness-form input[name=count]', '64');
  await page.click('#run-robustness');
  await page.waitForSelector('#jobs .job[data-job]', { timeout: 20000 });
  await page.waitForSelector('#robustness-section[data-state="done"]', { timeout: 120000 });
  assert.match(await page.textContent('#jobs .job'), /done 100%/);
  assert.equal(await page.locator('#curve-svg polyline.series').count(), 1);
  assert.equal(await page.locator('#curve-svg circle').count(), 5); // clean + 4 epsilons
  const bars = await page.$$eval('#histogram-svg rect.bar', (rs) => rs.map((r) => Number(r.getAttribute('height'))));
  assert.equal(bars.length, 12);
  assert.ok(bars.some((h) => h > 0));
  const row = await page.textContent('#robustness-table tbody tr');
  assert.match(row, /fashion-mlp/);
  assert.match(row, /0\.1: \d+\.\d%/);
});

test('AutoAttack gets a column beside PGD in the comparison table', async () => {
  await page.selectOption('#robustness-form select[name=attack]', 'autoattack:fast');
  await page.click('#run-robustness');
  await page.waitForFunction(() => document.querySelectorAll('#jobs .job').length === 2 &&
    document.querySelector('#robustness-section').dataset.state === 'done', null, { timeout: 120000 });
  const head = await page.$$eval('#comparison thead th', (ths) => ths.map((t) => t.textContent));
  assert.deepEqual(head, ['model', 'norm', 'pgd-40', 'autoattack fast']);
  const cells = await page.$$eval('#comparison tbody tr:first-child td', (tds) => tds.map((t) => t.textContent));
  const acc = (c) => [...c.matchAll(/: (\d+\.\d)%/g)].map((m) => Number(m[1]));
  const [pgd, aa] = [acc(cells[2]), acc(cells[3])];
  assert.equal(pgd.length, 4);
  assert.equal(aa.length, 4);
  // Same images, same epsilons: the ensemble is at least as strong as PGD-40 (1 image slack).
  for (let k = 0; k < 4; k++) assert.ok(aa[k] <= pgd[k] + 100 / 64 + 1e-9, `${aa} vs ${pgd}`);
  assert.match(await page.textContent('#robustness-table'), /broken by: apgd_ce \d+/);
  assert.equal(await page.locator('#curve-svg polyline.series').count(), 2);
  await page.locator('#robustness-section').screenshot({ path: path.join(OUT, 'robustness.png') });
});

// Horizontal overflow measured in the page: the document and each section fit the viewport,
// and no element sticks out of its card.
async function overflow(p) {
  return p.evaluate(() => {
    const out = [];
    const vw = window.innerWidth;
    if (document.documentElement.scrollWidth > vw) out.push(`document ${document.documentElement.scrollWidth} > ${vw}`);
    for (const sec of document.querySelectorAll('section')) {
      const box = sec.getBoundingClientRect();
      if (box.right > vw + 0.5) out.push(`#${sec.id} ends at ${box.right} > ${vw}`);
      for (const e of sec.querySelectorAll('*')) {
        if (e.parentElement.closest('.scroll, pre')) continue; // inside a box that scrolls
        const r = e.getBoundingClientRect();
        if (r.width && r.right > box.right + 0.5) out.push(`${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''} in #${sec.id} ends at ${r.right} > ${box.right}`);
      }
    }
    return [...new Set(out)].slice(0, 10);
  });
}

test('connection quantities are shown as medians and quantiles, and per sample', async () => {
  const head = await page.$$eval('#connections thead th', (ths) => ths.map((t) => t.textContent));
  assert.deepEqual(head, ['connection quantity', 'median', '10%', '90%', 'max']);
  assert.match(await page.textContent('#regularizers-section .hint'), /median/);
  // the median shown is the median of the per-sample values the daemon answers
  const [shown, want] = await page.evaluate(async () => {
    const cell = document.querySelector('#connections tr[data-quantity="curvature_ratio"] td:nth-child(2)').textContent;
    const d = await (await fetch('/v1/datasets/fashion-mnist/test?offset=0&limit=16')).json();
    const r = await (await fetch('/v1/models/fashion-mlp/connections', { method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ inputs: d.images, labels: d.labels }) })).json();
    const v = r.curvature_ratio.map((u) => (u === null ? Infinity : u)).sort((a, b) => a - b);
    return [cell, (v[7] + v[8]) / 2];
  });
  assert.ok(Math.abs(Number(shown) - want) <= 1e-4 * Math.max(1, Math.abs(want)), `${shown} vs ${want}`);
  const cols = await page.$$eval('#connections-per-sample thead th', (ths) => ths.map((t) => t.textContent));
  for (const k of ['image', 'label', 'curvature_ratio', 'jacobian_fro2', 'left_region']) assert.ok(cols.includes(k), k);
  assert.equal(await page.locator('#connections-per-sample tbody tr').count(), 16);
});

test('AutoAttack runs from the attack form', async () => {
  await page.selectOption('#attack-form select[name=attack]', 'autoattack:fast');
  await page.fill('#attack-form input[name=epsilon]', '0.1');
  await page.click('#run-attack');
  await page.waitForSelector('#attack-result[data-state="done"]', { timeout: 120000 });
  const status = await page.textContent('#attack-status');
  const m = status.match(/^autoattack \(fast\): (\d+)\/16 broken/);
  assert.ok(m, status);
  assert.equal(await page.locator('#attack-result .case').count(), 16);
  assert.equal(await page.locator('#attack-result .case.broken').count(), Number(m[1]));
  if (Number(m[1])) assert.match(await page.textContent('#attack-result .case.broken .info'), /broken by apgd_(ce|t)/);
  await page.locator('#attack-section').screenshot({ path: path.join(OUT, 'attack-autoattack.png') });
});

test('the ε-curve says when its runs differ in size', async () => {
  assert.equal(await page.textContent('#curve-note'), 'each run: 64 images');
  await page.selectOption('#robustness-form select[name=attack]', 'fgsm');
  await page.fill('#robustness-form input[name=count]', '32');
  await page.click('#run-robustness');
  await page.waitForFunction(() => document.querySelectorAll('#jobs .job').length === 3 &&
    document.querySelector('#robustness-section').dataset.state === 'done', null, { timeout: 120000 });
  const note = await page.textContent('#curve-note');
  assert.match(note, /differ in size/);
  assert.match(note, /32 images/);
  assert.match(note, /64 images/);
  assert.equal(await page.locator('#curve-svg polyline.series').count(), 3);
});

test('at 1400 px the training record stays inside the model card', async () => {
  await page.setViewportSize({ width: 1400, height: 900 });
  await page.click('#models tbody tr[data-model="fashion-mlp"]');
  await page.waitForSelector('#metadata pre.json');
  assert.match(await page.textContent('#metadata pre.json'), /"history"/);
  assert.deepEqual(await overflow(page), []);
  await page.locator('#models-section').screenshot({ path: path.join(OUT, 'models-1400px.png') });
});

test('at 800 px nothing overflows horizontally', async () => {
  const narrow = await browser.newPage({ viewport: { width: 800, height: 1000 } });
  const errs = [];
  narrow.on('pageerror', (e) => errs.push(String(e)));
  await narrow.goto(URL + '/');
  await narrow.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
  await narrow.click('#predict');
  await narrow.waitForSelector('#images-status:has-text("correct")');
  await narrow.click('#run-regularizers');
  await narrow.waitForSelector('#regularizers-status:has-text("samples")', { timeout: 20000 });
  await narrow.click('#per-sample summary');
  await narrow.selectOption('#attack-form select[name=attack]', 'fgsm');
  await narrow.click('#run-attack');
  await narrow.waitForSelector('#attack-result[data-state="done"]', { timeout: 30000 });
  const widths = await narrow.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(widths[0] <= widths[1], `scrollWidth ${widths[0]} > innerWidth ${widths[1]}`);
  assert.deepEqual(await overflow(narrow), []);
  await narrow.screenshot({ path: path.join(OUT, 'dashboard-800px.png'), fullPage: true });
  await narrow.close();
  assert.deepEqual(errs, []);
});

test('no error reached the page console', () => {
  assert.deepEqual(errors, []);
});

// After the console check: the refused upload (401) logs a failed request to the console.
test('dropping a .safetensors file on the page uploads it, with the token', async () => {
  const drop = (name, from) => page.evaluate(async ([n, f]) => {
    const bytes = f ? await (await fetch(f)).arrayBuffer() : new TextEncoder().encode('not a model');
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], n));
    document.querySelector('#images').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [name, from]);
  await drop('notes.txt', null);
  await page.waitForSelector('#upload-status:has-text("not a .safetensors file")');
  await page.fill('#token', '');
  await drop('dropped cnn.safetensors', '/v1/models/random-cnn/weights');
  await page.waitForSelector('#upload-status.error:has-text("401")');
  assert.match(await page.textContent('#upload-status'), /token field/);
  await page.fill('#token', TOKEN);
  await drop('dropped cnn.safetensors', '/v1/models/random-cnn/weights');
  await page.waitForSelector('#models tbody tr[data-model="dropped-cnn"]', { timeout: 20000 });
  assert.match(await page.textContent('#upload-status'), /^dropped-cnn created: version 1/);
  await page.waitForSelector('#model-detail h3:has-text("dropped-cnn v1")');
  await page.locator('#models-section').screenshot({ path: path.join(OUT, 'upload.png') });
  const listed = await page.evaluate(async () => (await (await fetch('/v1/models')).json()).models.map((m) => m.name));
  assert.ok(listed.includes('dropped-cnn'), listed);
  // leave the daemon as it was
  const st = await page.evaluate(async (t) => (await fetch('/v1/models/dropped-cnn', {
    method: 'DELETE', headers: { Authorization: `Bearer ${t}` } })).status, TOKEN);
  assert.equal(st, 204);
});
