// Opens an experiment's page in Debian's chromium (playwright-core) three times and prints how
// long it takes until the learning curves, the parallel coordinates and the trials table are
// drawn, how many curves and points the chart holds, and the page's JavaScript heap.
//   node bench/web_page.mjs PAGE_URL EXPERIMENT_ID TRIALS
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const { chromium } = await import(join(here, '../web/node_modules/playwright-core/index.mjs'));
const [url, id, trials] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.RUNG_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
for (let run = 1; run <= 3; run++) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  const start = Date.now();
  await page.goto(`${url}#/experiments/${id}`);
  await page.waitForFunction((n) => {
    const chart = (sel) => {
      const el = document.querySelector(sel);
      return el && globalThis.echarts.getInstanceByDom(el);
    };
    const curves = chart('#curves'), parallel = chart('#parallel');
    return curves && parallel && curves.getOption().series.length > 1 &&
      parallel.getOption().series[0].data.length === n &&
      document.querySelectorAll('#trials tr[data-id]').length > 0;
  }, Number(trials), { timeout: 120000, polling: 100 });
  const drawn = Date.now() - start;
  const shown = await page.evaluate(() => {
    const s = globalThis.echarts.getInstanceByDom(document.querySelector('#curves')).getOption().series
      .filter((x) => x.id !== '__rungs');
    return { curves: s.length, points: s.reduce((n, x) => n + x.data.length, 0),
             caption: document.querySelector('#curves-caption')?.textContent ?? '' };
  });
  // When each of the page's calls to rungd had its answer, from the start of the navigation.
  const calls = await page.evaluate(() => performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/api/') && !e.name.endsWith('WatchExperiment'))
    .map((e) => `${e.name.split('/').pop()} ${Math.round(e.responseEnd)} ms ` +
                `(${(e.transferSize / 2 ** 20).toFixed(1)} MiB)`));
  const { metrics } = await cdp.send('Performance.getMetrics');
  const heap = metrics.find((m) => m.name === 'JSHeapUsedSize').value / 2 ** 20;
  console.log(`web: page drawn in ${drawn} ms (run ${run}): ${shown.curves} curves, ` +
              `${shown.points} points on the chart, JS heap ${heap.toFixed(0)} MiB; "${shown.caption.trim()}"`);
  if (run === 1) console.log(`web: answers at: ${calls.join(', ')}`);
  await page.close();
}
await browser.close();
