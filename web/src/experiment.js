// #/experiments/ID : one experiment. Loaded with GetExperiment + ListTrials, then kept live by
// WatchExperiment (events that come before the first load is done wait in a queue).
//
// Updates are throttled in two speeds: the learning curves (curves.js) at most 4 times a
// second; the header, the trials table and the other charts at most twice a second.

import { api, watchExperiment } from './api.js';
import { ablationOption, bestOverTimeOption, initChart, paretoOption, parallelOption } from './charts.js';
import { MAX_POINTS, createCurves } from './curves.js';
import { createTrialsTable } from './trials-table.js';
import {
  ago, badge, esc, fmtG, fmtInt, fmtNum, fmtSigned, num, objectives,
} from './format.js';

const SLOW_MS = 500;
const COUNT_ORDER = ['completed', 'running', 'waiting', 'pending', 'stopped', 'failed'];

// What of a trial the page shows; equal signatures need no redraw.
function signature(t) {
  return [t.state, t.attempt, t.reports, t.result, t.hasResult, t.bestValue, t.endedUnixMs,
    t.stopRequested, t.message, t.workerId, t.lastStep, t.resourceReached, t.failures].join('|');
}

function isAblation(spec) {
  return spec?.kind === 'ablation' || Boolean(spec?.ablation);
}

function skeleton(spec) {
  const objs = objectives(spec);
  return `
    <div id="exp-header"></div>
    <section class="card">
      <div class="card-head"><h2>Progress</h2></div>
      <div id="counts"></div>
      <div id="best-over-time" class="chart chart-sm"></div>
    </section>
    <section class="card">
      <div class="card-head">
        <h2>Learning curves</h2>
        <span class="spacer"></span>
        <label class="inline">metric <select id="curves-metric"></select></label>
        <label class="inline"><input id="curves-log" type="checkbox"> log y</label>
      </div>
      <div id="curves" class="chart chart-lg"></div>
      <p id="curves-caption" class="caption"></p>
    </section>
    ${spec?.searchSpace?.length ? `
    <section class="card">
      <div class="card-head"><h2>Parameters</h2><span class="spacer"></span>
        <span id="parallel-caption" class="caption"></span></div>
      <div id="parallel" class="chart"></div>
    </section>` : ''}
    ${objs.length >= 2 ? `
    <section class="card">
      <div class="card-head"><h2>Pareto front</h2><span class="spacer"></span>
        <span id="pareto-caption" class="caption"></span></div>
      <div id="pareto" class="chart"></div>
    </section>` : ''}
    ${isAblation(spec) ? `
    <section class="card">
      <div class="card-head"><h2>Ablation</h2></div>
      <p id="ablation-summary" class="caption"></p>
      <table id="ablation" class="grid"></table>
      <p id="ablation-top" class="caption"></p>
      <div id="ablation-chart" class="chart chart-sm"></div>
    </section>` : ''}
    <section class="card">
      <div class="card-head"><h2>Trials</h2><span class="spacer"></span>
        <span id="trials-caption" class="caption"></span></div>
      <div class="table-wrap"><table id="trials" class="grid sortable"></table></div>
      <button id="trials-more" type="button" class="more" hidden>show more</button>
    </section>
    <details class="card" id="spec-section">
      <summary>Spec</summary>
      <pre id="spec"></pre>
    </details>`;
}

function headerHtml(e) {
  const spec = e.spec ?? {};
  const objs = objectives(spec);
  const c = e.counts ?? {};
  const goals = objs.map((o) => `${esc(o.metric)} ${o.maximize ? '↑ max' : '↓ min'}`).join(', ');
  const best = e.hasBest
    ? `best <a href="#/trials/${encodeURIComponent(e.bestTrialId)}">${esc(e.bestTrialId)}</a>
       <b class="num" title="${esc(String(e.bestValue))}">${fmtNum(e.bestValue)}</b>`
    : objs.length > 1 ? 'Pareto set below' : '<span class="dim">no result yet</span>';
  const total = num(spec.budget?.maxTrials);
  const algorithm = spec.algorithm?.name ?? '';
  const rule = spec.algorithm?.earlyStopping?.rule;
  return `
    <div class="page-head">
      <h1>${esc(spec.name || e.id)}</h1>
      <span class="mono dim">${esc(e.id)}</span>
      ${badge(e.state)}
    </div>
    <div class="facts">
      <span>owner <b>${esc(e.owner || '-')}</b></span>
      <span>objective <b>${goals}</b></span>
      <span>algorithm <b>${esc(algorithm)}${rule && rule !== algorithm ? ` + ${esc(rule)}` : ''}</b></span>
      <span>trials <b>${fmtInt(e.trialsCreated)}${total ? ` / ${fmtInt(total)}` : ''}</b>
        (${num(c.running)} running, ${num(c.completed)} completed, ${num(c.failed)} failed, ${num(c.stopped)} stopped)</span>
      <span>${best}</span>
      <span>created <b title="${esc(new Date(num(e.createdUnixMs)).toLocaleString())}">${ago(e.createdUnixMs)}</b></span>
    </div>
    ${e.message ? `<p class="note warn">${esc(e.message)}</p>` : ''}
    ${e.unschedulable ? `<p class="note warn">cannot run: ${esc(e.unschedulable)}</p>` : ''}`;
}

function countsHtml(e) {
  const c = e.counts ?? {};
  const total = COUNT_ORDER.reduce((s, k) => s + num(c[k]), 0);
  const max = Math.max(total, num(e.spec?.budget?.maxTrials));
  const seg = COUNT_ORDER.filter((k) => num(c[k]) > 0).map((k) =>
    `<span class="seg st-${k}" style="width:${((100 * num(c[k])) / (max || 1)).toFixed(2)}%" title="${k}: ${num(c[k])}"></span>`);
  const legend = COUNT_ORDER.map((k) =>
    `<span class="legend-item"><i class="swatch st-${k}"></i>${k} <b>${fmtInt(c[k])}</b></span>`);
  return `<div class="stacked">${seg.join('')}</div><div class="legend">${legend.join('')}
    ${max > total ? `<span class="legend-item dim">not created <b>${fmtInt(max - total)}</b></span>` : ''}</div>`;
}

// The ablation table, with the figures `rung ablation` prints: mean %.6g, sd and p %.3g,
// change %+.4g, "-" when too few runs gave one.
function ablationTable(a) {
  const dash = (v, f) => (v === undefined || v === null ? '-' : f(v));
  const rows = (a.variants ?? []).map((v, i) => {
    const base = i === 0;
    const sig = base || !v.test ? '-' : `${v.significant ? '✓' : 'no'} (${esc(v.test)})`;
    const mean = dash(v.mean, (m) => fmtG(m, 6));
    const sd = dash(v.stddev, (s) => fmtG(s, 3));
    return `<tr data-variant="${esc(v.name)}" class="${v.significant ? 'significant' : ''}">
      <td>${esc(v.name)}</td><td>${esc(v.kind)}</td><td>${esc((v.dropped ?? []).join(', ') || '-')}</td>
      <td class="num">${num(v.runs)}</td>
      <td class="num">${mean}${v.stddev !== undefined ? ` ± ${sd}` : ''}</td>
      <td class="num">${base ? '-' : dash(v.delta, (d) => fmtSigned(d, 4))}</td>
      <td class="num">${base ? '-' : dash(v.p, (p) => fmtG(p, 3))}</td>
      <td>${sig}</td>
      <td class="num">${num(v.rank) > 0 ? num(v.rank) : '-'}</td></tr>`;
  });
  return `<thead><tr><th>variant</th><th>kind</th><th>dropped</th><th>runs</th><th>mean ± sd</th>
    <th>change</th><th>p</th><th>significant</th><th>rank</th></tr></thead><tbody>${rows.join('')}</tbody>`;
}

export function mount(root, [id], ctx) {
  ctx.title(id);
  root.innerHTML = '<p class="empty">loading…</p>';
  let exp = null;
  const trials = new Map();
  let ready = false;
  let queue = [];              // watch events before the first load is done
  let curves = null;
  let table = null;
  const changed = new Set();   // trials changed since the last slow update
  const added = new Set();     // ... of which new to the page
  const dirty = { header: false, results: false, ablation: false };
  let slowTimer = 0;
  let lastSlow = 0;
  let ablationTimer = 0;
  let ablationAt = 0;

  // ---- rendering ------------------------------------------------------------------------

  function renderHeader() {
    root.querySelector('#exp-header').innerHTML = headerHtml(exp);
    root.querySelector('#counts').innerHTML = countsHtml(exp);
    ctx.title(exp.spec?.name ? `${exp.spec.name} (${exp.id})` : exp.id);
  }

  // The charts built from completed trials' results.
  function renderResults() {
    const list = [...trials.values()].sort((a, b) => num(a.index) - num(b.index));
    const objs = objectives(exp.spec);
    initChart(root.querySelector('#best-over-time'))?.setOption(bestOverTimeOption(list, objs[0]), { notMerge: true });
    const par = root.querySelector('#parallel');
    if (par) {
      const option = parallelOption(exp.spec, list, objs[0], exp.hasBest ? exp.bestTrialId : '');
      initChart(par)?.setOption(option, { notMerge: true });
      const n = option.series[0].data.length;
      root.querySelector('#parallel-caption').textContent =
        `${fmtInt(n)} completed trials, coloured by ${objs[0].metric}`;
    }
    const pareto = root.querySelector('#pareto');
    if (pareto) {
      const option = paretoOption(list, objs);
      initChart(pareto)?.setOption(option, { notMerge: true });
      root.querySelector('#pareto-caption').textContent =
        `${fmtInt(option.series.find((s) => s.id === 'front').data.length)} trials on the front`;
    }
  }

  async function loadAblation() {
    ablationAt = Date.now();
    let a;
    try {
      a = await api.getAblation(id);
    } catch (e) {
      if (ctx.active) {
        if (e?.status === 401) ctx.fail(e);
        else root.querySelector('#ablation-summary').textContent = `ablation results unavailable: ${e.message}`;
      }
      return;
    }
    if (!ctx.active) return;
    const variants = a.variants ?? [];
    root.querySelector('#ablation-summary').textContent =
      `${a.name || ''}: ${a.state}, ${variants.length} variants × ${num(a.repeats)} repeats; ` +
      `${a.objective} (${a.goal}), mean over completed runs. Change against the base: a two-sided ` +
      `t-test, paired on the repeats' shared seeds (Welch's when runs do not pair), significant at p < ${fmtG(a.alpha, 2)}.`;
    root.querySelector('#ablation').innerHTML = ablationTable(a);
    const top = variants[1];
    root.querySelector('#ablation-top').textContent = top && num(top.rank) === 1
      ? `most important: ${top.name} (${top.kind}): without it ${a.objective} is ` +
        `${Number(top.harm ?? 0) > 0 ? 'worse' : 'no worse'} by ` +
        `${top.delta === undefined ? '-' : fmtG(Math.abs(Number(top.delta)), 4)}` +
        `${top.significant ? '' : ', within the noise of these repeats'}`
      : '';
    initChart(root.querySelector('#ablation-chart'))?.setOption(ablationOption(a), { notMerge: true });
  }

  // At most one GetAblation every 2 s.
  function scheduleAblation() {
    if (!root.querySelector('#ablation') || ablationTimer) return;
    ablationTimer = setTimeout(() => {
      ablationTimer = 0;
      loadAblation();
    }, Math.max(0, ablationAt + 2000 - Date.now()));
  }

  function slowFlush() {
    slowTimer = 0;
    lastSlow = Date.now();
    if (!ctx.active || !ready) return;
    if (dirty.header) renderHeader();
    if (changed.size) {
      curves.trialsChanged(changed, added);
      table.update();
    }
    if (dirty.results) renderResults();
    if (dirty.ablation) scheduleAblation();
    changed.clear();
    added.clear();
    dirty.header = dirty.results = dirty.ablation = false;
  }

  function scheduleSlow() {
    if (slowTimer) return;
    slowTimer = setTimeout(slowFlush, Math.max(0, lastSlow + SLOW_MS - Date.now()));
  }

  // ---- events ---------------------------------------------------------------------------

  function handle(ev) {
    if (ev.experiment) {
      exp = ev.experiment;
      curves.setExperiment(exp);
      dirty.header = true;
      dirty.ablation = true;
      scheduleSlow();
    } else if (ev.trial) {
      const t = ev.trial;
      const prev = trials.get(t.id);
      if (t.experimentId && t.experimentId !== id) return;
      trials.set(t.id, t);
      // The stream's first events repeat every trial: only real changes cost a redraw.
      if (prev && signature(prev) === signature(t)) return;
      changed.add(t.id);
      if (!prev) added.add(t.id);
      if (t.state === 'TRIAL_COMPLETED' || prev?.state === 'TRIAL_COMPLETED' || !prev) dirty.results = true;
      if (t.state !== prev?.state) dirty.ablation = true;
      scheduleSlow();
    } else if (ev.report) {
      curves.report(ev.report);
    }
  }

  // The watch's first events are every trial as it is now, then the experiment: once that
  // experiment event is in, the page holds the whole state (no ListTrials, which would carry
  // every trial a second time). Reports that come before the page is drawn wait in `queue`.
  let subscribed, snapshotIn, snapshotFailed;
  const watching = new Promise((resolve) => { subscribed = resolve; });
  const snapshot = new Promise((resolve, reject) => { snapshotIn = resolve; snapshotFailed = reject; });
  const watch = watchExperiment(id, {
    onEvent(ev) {
      if (ready) handle(ev);
      else if (ev.trial && ev.trial.experimentId === id) trials.set(ev.trial.id, ev.trial);
      else if (ev.experiment) snapshotIn(ev.experiment);
      else queue.push(ev);
    },
    onOpen(reconnected) {
      ctx.live('live');
      // rungd now sends every report: the curves are asked for from here (the stream does not
      // replay reports, so again after a reconnect).
      if (!reconnected) subscribed();
      else if (ready) curves.load();
    },
    onDrop() {
      ctx.live('reconnecting…');
    },
    onEnd() {
      ctx.live('');
    },
    onError(e) {
      ctx.live('');
      if (!ready) snapshotFailed(e);
      else ctx.fail(e);
    },
  });

  // ---- first load -----------------------------------------------------------------------

  (async () => {
    // The curves are asked for as soon as the watch runs, while the trials arrive; they are
    // drawn once the trials are in.
    const firstCurves = watching.then(() => api.getCurves(id, '', MAX_POINTS));
    firstCurves.catch(() => {});  // handled where it is awaited
    let e;
    try {
      e = await snapshot;
    } catch (err) {
      if (!ctx.active) return;
      watch.close();
      root.innerHTML = `<p class="empty">Experiment ${esc(id)} could not be loaded.</p>`;
      ctx.fail(err);
      return;
    }
    if (!ctx.active) return;
    exp = e;
    root.innerHTML = skeleton(exp.spec);
    root.querySelector('#spec').textContent = JSON.stringify(exp.spec ?? {}, null, 2);
    curves = createCurves({
      el: root.querySelector('#curves'),
      captionEl: root.querySelector('#curves-caption'),
      logEl: root.querySelector('#curves-log'),
      metricEl: root.querySelector('#curves-metric'),
      experimentId: id,
      trials,
      ctx,
    });
    curves.setExperiment(exp);
    table = createTrialsTable({
      table: root.querySelector('#trials'),
      more: root.querySelector('#trials-more'),
      caption: root.querySelector('#trials-caption'),
      trials,
      getExperiment: () => exp,
      onHover: (tid, on) => curves.highlight(tid, on),
    });
    renderHeader();
    table.update();
    renderResults();
    if (root.querySelector('#ablation')) loadAblation();
    curves.load(firstCurves);
    ready = true;
    const early = queue;
    queue = [];
    for (const ev of early) handle(ev);
  })();

  return () => {
    watch.close();
    curves?.dispose();
    clearTimeout(slowTimer);
    clearTimeout(ablationTimer);
  };
}
