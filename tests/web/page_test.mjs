// The web page in Debian's chromium, driven by playwright-core: run by
// tests/integration/web_e2e_test.cc, which starts rungd (TLS, tokens) and the workers, runs the
// experiments and writes what the page must show into the JSON file given as the argument.
// Prints what it checked; exits non-zero at the first check that fails. Screenshots of each
// page go to expect.screenshots.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
const { chromium } = await import(join(here, '../../web/node_modules/playwright-core/index.mjs'));
const expect = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(expect.screenshots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.RUNG_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
const page = await context.newPage();
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
const offsite = [];
page.on('request', (r) => { if (!r.url().startsWith(expect.url)) offsite.push(r.url()); });

function ok(what) { console.log(`ok: ${what}`); }
async function shot(name) {
  await page.waitForTimeout(300);  // let the last animation frame paint; only the picture waits
  await page.screenshot({ path: join(expect.screenshots, `${name}.png`), fullPage: true });
}
// The series of the chart in `selector`, as ECharts holds them.
async function series(selector) {
  return page.evaluate((sel) => {
    const el = document.querySelector(sel);
    const chart = el && globalThis.echarts.getInstanceByDom(el);
    return chart ? chart.getOption().series.map((s) => ({ id: s.id, data: s.data })) : null;
  }, selector);
}
async function go(hash) {
  await page.goto(`${expect.url}${hash}`);
}

try {
  // No token: the page asks for one; a wrong one is refused with rungd's reason.
  await go('#/');
  await page.waitForSelector('#token-form');
  await shot('sign-in');
  await page.fill('#token', 'not-a-token-at-all-0000');
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector('#token-error:not([hidden])');
  const refusal = await page.textContent('#token-error');
  assert.match(refusal, /unknown token/, refusal);
  assert.equal(await page.locator('#experiments').count(), 0);
  ok(`a wrong token is refused: "${refusal.trim()}"`);

  // Alice's token: her experiments, not bob's.
  await page.fill('#token', expect.alice);
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector('#experiments tr[data-id]');
  const ids = await page.$$eval('#experiments tr[data-id]', (rows) => rows.map((r) => r.dataset.id));
  assert.deepEqual([...ids].sort(), [expect.asha, expect.ablation, expect.live, expect.pbt].sort());
  ok(`the experiments list shows alice's ${ids.join(', ')} and not bob's ${expect.bobs}`);
  await shot('experiments');
  await go(`#/experiments/${expect.bobs}`);
  await page.waitForSelector('#error:not([hidden])');
  const hidden = await page.textContent('#error');
  assert.match(hidden, new RegExp(`no experiment ${expect.bobs}`), hidden);
  ok(`bob's experiment is not shown to alice: "${hidden.trim()}"`);

  // The ASHA search: every trial's curve holds exactly the points it reported.
  await go(`#/experiments/${expect.asha}`);
  await page.waitForFunction((n) => {
    const el = document.querySelector('#curves');
    const c = el && globalThis.echarts.getInstanceByDom(el);
    return c && c.getOption().series.filter((s) => s.id !== '__rungs').length === n;
  }, Object.keys(expect.curves).length, { timeout: 30000 });
  const curves = (await series('#curves')).filter((s) => s.id !== '__rungs');
  let points = 0;
  for (const s of curves) {
    assert.deepEqual(s.data, expect.curves[s.id], `the curve of ${s.id}`);
    points += s.data.length;
  }
  assert.deepEqual(curves.map((s) => s.id).sort(), Object.keys(expect.curves).sort());
  const rungs = (await series('#curves')).find((s) => s.id === '__rungs');
  assert.ok(rungs, 'ASHA rungs are marked');
  ok(`the learning curves hold exactly the ${points} points of ${curves.length} trials`);
  await page.waitForFunction((n) => {
    const el = document.querySelector('#parallel');
    const c = el && globalThis.echarts.getInstanceByDom(el);
    return c && c.getOption().series[0].data.length === n;
  }, expect.completed.length, { timeout: 30000 });
  const parallel = await series('#parallel');
  assert.deepEqual(parallel[0].data.map((d) => d.name).sort(), [...expect.completed].sort());
  ok(`the parallel coordinates have one line per completed trial (${expect.completed.length})`);
  const rows = await page.$$eval('#trials tr[data-id]', (r) => r.length);
  assert.equal(rows, Object.keys(expect.curves).length);
  ok(`the trials table has ${rows} rows`);
  await shot('experiment-asha');

  // The ablation study: the variants' table and chart.
  await go(`#/experiments/${expect.ablation}`);
  await page.waitForSelector('#ablation tbody tr');
  const variants = await page.$$eval('#ablation tbody tr', (r) => r.map((x) => x.textContent));
  assert.equal(variants.length, 3, variants.join('\n'));
  assert.ok(variants.some((v) => v.includes('area')), variants.join('\n'));
  await page.waitForFunction(() => {
    const el = document.querySelector('#ablation-chart');
    return el && globalThis.echarts.getInstanceByDom(el);
  });
  // Each variant's figures as `rung ablation` prints them: mean, sd, change and p.
  const cells = await page.$$eval('#ablation tbody tr', (r) => r.map((x) =>
    [...x.querySelectorAll('td')].map((td) => td.textContent.trim())));
  for (const row of cells) {
    const line = expect.ablationCli.split('\n').find((l) => l.includes(` ${row[0]} `) || l.startsWith(`${row[0]} `));
    assert.ok(line, `rung ablation has no line for ${row[0]}:\n${expect.ablationCli}`);
    const figures = [...row[4].split('±').map((x) => x.trim()), row[5], row[6]].filter((x) => x && x !== '-');
    for (const fig of figures) assert.ok(line.includes(fig), `${row[0]}: ${fig} is not in "${line}"`);
  }
  ok(`the ablation study shows ${variants.length} variants with the figures of rung ablation`);
  await shot('experiment-ablation');

  // A report made while the page is open appears without a reload.
  await go(`#/experiments/${expect.live}`);
  const liveCurve = async () => (await series('#curves'))?.find((s) => s.id !== '__rungs' && s.data.length > 0);
  await page.waitForFunction(() => {
    const el = document.querySelector('#curves');
    const c = el && globalThis.echarts.getInstanceByDom(el);
    return c && c.getOption().series.some((s) => s.id !== '__rungs' && s.data.length === 3);
  }, null, { timeout: 30000 });
  const opened = Date.now();
  writeFileSync(expect.gate, 'go\n');  // the trial reports its fourth step now
  await page.waitForFunction(() => {
    const el = document.querySelector('#curves');
    const c = globalThis.echarts.getInstanceByDom(el);
    return c.getOption().series.some((s) => s.id !== '__rungs' && s.data.length === 4);
  }, null, { timeout: 1000, polling: 'raf' });
  const latency = Date.now() - opened;
  const four = await liveCurve();
  assert.deepEqual(four.data[3][0], 4);
  ok(`a report made while the page was open appeared in ${latency} ms (under 1 s)`);
  await shot('experiment-live');

  // A trial, and the workers.
  const best = expect.completed[0];
  await go(`#/trials/${best}`);
  await page.waitForSelector('#attempts tbody tr');
  await page.waitForFunction(() => {
    const el = document.querySelector('[id="metric-loss"]');
    return el && globalThis.echarts.getInstanceByDom(el);
  });
  const attempts = await page.$$eval('#attempts tbody tr', (r) => r.map((x) => x.textContent));
  assert.match(attempts[attempts.length - 1], /completed/);
  ok(`trial ${best}: its loss curve and ${attempts.length} attempt(s)`);
  await shot('trial');
  // A PBT member: its lineage through its donors, and its hyperparameter schedule.
  await go(`#/trials/${expect.pbtBest}`);
  await page.waitForSelector('#lineage tbody tr');
  const trainedBy = await page.$$eval('#lineage tbody tr', (r) => r.map((x) => x.cells[1].textContent));
  assert.deepEqual(trainedBy, expect.pbtLineage);
  await page.waitForFunction(() => {
    const c = globalThis.echarts.getInstanceByDom(document.querySelector('#schedule'));
    return c && c.getOption().series.length === 2;
  });
  ok(`PBT member ${expect.pbtBest}: its lineage (${trainedBy.length} segments) as rung lineage has it, and its schedule`);
  await shot('trial-lineage');
  await go('#/workers');
  await page.waitForSelector('#workers tr[data-id]');
  const workers = await page.$$eval('#workers tr[data-id]', (r) => r.map((x) => x.dataset.id));
  assert.deepEqual(workers.sort(), ['w1', 'w2']);
  ok(`the workers page lists ${workers.join(', ')}`);
  await shot('workers');

  assert.deepEqual(pageErrors, [], 'errors in the page');
  assert.deepEqual(offsite, [], 'requests beyond rungd');
  ok('no script errors, and nothing loaded from anywhere but rungd');
} catch (e) {
  console.log(`FAILED: ${e.message}`);
  await page.screenshot({ path: join(expect.screenshots, 'failure.png'), fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
