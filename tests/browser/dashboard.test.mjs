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

test('no error reached the page console', () => {
  assert.deepEqual(errors, []);
});
