// #/trials/ID : one trial: its parameters and state, a chart per reported metric, its
// attempts (and hops, in hopper mode), and the tail of its stderr. Kept live by watching its
// experiment and taking that trial's events.

import { api, watchExperiment } from './api.js';
import { initChart, lttb, metricOption } from './charts.js';
import { drawSchedule, lineage, lineageCard } from './lineage.js';
import {
  ago, badge, duration, esc, fmtNum, fmtTime, num, objectives, paramValue, runBy, stateWord,
} from './format.js';

const MAX_CHART_POINTS = 5000;  // per series; more are reduced with LTTB for the small charts
const FLUSH_MS = 250;

function paramsTable(t, exp) {
  const order = (exp?.spec?.searchSpace ?? []).map((p) => p.name);
  const names = [...new Set([...order, ...Object.keys(t.params ?? {}).sort()])];
  const rows = names.filter((n) => t.params?.[n]).map((n) => {
    const pv = t.params[n];
    const v = paramValue(pv);
    const shown = typeof v === 'number' && !('intValue' in pv) ? fmtNum(v) : String(v);
    return `<tr><td>${esc(n)}</td><td class="num" title="${esc(String(v))}">${esc(shown)}</td></tr>`;
  });
  return `<table id="params" class="grid kv"><thead><tr><th>parameter</th><th>value</th></tr></thead>
    <tbody>${rows.join('') || '<tr><td colspan="2" class="dim">none</td></tr>'}</tbody></table>`;
}

function summary(t, exp) {
  const objs = objectives(exp?.spec);
  const results = objs.length > 1 && t.results?.length
    ? t.results.map((r, i) => `${esc(objs[i]?.metric ?? `objective ${i + 1}`)} ${fmtNum(r)}`).join(', ')
    : t.hasResult ? `${esc(objs[0]?.metric ?? '')} ${fmtNum(t.result)}` : '-';
  const facts = [
    ['experiment', `<a href="#/experiments/${encodeURIComponent(t.experimentId)}">${esc(t.experimentId)}</a>` +
      (exp?.spec?.name ? ` <span class="dim">${esc(exp.spec.name)}</span>` : '')],
    ['state', badge(t.state) + (t.stopRequested && stateWord(t.state) === 'running' ? ' <span class="dim">stop requested</span>' : '')],
    ['result', results],
    ['best reported', t.hasBestValue ? fmtNum(t.bestValue) : '-'],
    ['attempt', `${num(t.attempt)} <span class="dim">(${num(t.failures)} failed)</span>`],
    ['run by', esc(runBy(t) || '-') + (t.slots?.length ? ` <span class="dim">slots ${t.slots.join(', ')}</span>` : '')],
    ['reports', `${num(t.reports)} <span class="dim">(last step ${fmtNum(t.lastStep ?? 0)})</span>`],
    ['budget', `${Number(t.budget) > 0 ? fmtNum(t.budget) : '-'}, reached ${fmtNum(t.resourceReached ?? 0)}`],
    ['started', num(t.startedUnixMs) ? `${fmtTime(t.startedUnixMs)} <span class="dim">${ago(t.startedUnixMs)}</span>` : '-'],
    ['ended', fmtTime(t.endedUnixMs)],
  ];
  if (t.stopReason) facts.push(['stopped', esc(t.stopReason)]);
  if (t.infeasible) facts.push(['infeasible', esc(t.infeasible)]);
  if (t.ablation) facts.push(['ablation', `<code>${esc(t.ablation)}</code> seed ${esc(t.seed ?? '')}`]);
  if (t.message) {
    facts.push([t.state === 'TRIAL_FAILED' ? 'reason' : 'last failure', `<span class="reason">${esc(t.message)}</span>`]);
  }
  return `<table id="trial-facts" class="kv"><tbody>${facts.map(([k, v]) =>
    `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join('')}</tbody></table>`;
}

function attemptsTable(t) {
  const list = t.attempts ?? [];
  if (!list.length) return '<p class="dim">No attempt records (a trial from before rung kept them).</p>';
  const rows = list.map((a) => {
    const ended = num(a.endedUnixMs);
    const started = num(a.startedUnixMs);
    const outcome = a.outcome || (ended ? '' : 'running');
    return `<tr><td class="num">${num(a.attempt)}</td><td>${esc(a.workerId || (a.clientId ? `client:${a.clientId}` : '-'))}</td>
      <td>${fmtTime(started)}</td><td>${ended ? fmtTime(ended) : '<span class="dim">running</span>'}</td>
      <td class="num">${started ? duration((ended || Date.now()) - started) : '-'}</td>
      <td><span class="badge st-${esc(outcome)}">${esc(outcome || '-')}</span></td>
      <td class="reason">${esc(a.message || '')}</td></tr>`;
  });
  return `<table id="attempts" class="grid"><thead><tr><th>attempt</th><th>worker</th><th>started</th>
    <th>ended</th><th>duration</th><th>outcome</th><th>message</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function hopsTable(t) {
  const hops = t.hops ?? [];
  if (!hops.length) return '';
  const rows = hops.map((h) => `<tr><td class="num">${num(h.epoch)}</td><td class="num">${num(h.partition)}</td>
    <td>${esc(h.workerId || '-')}</td><td class="num">${num(h.attempt)}</td><td>${fmtTime(h.startedUnixMs)}</td>
    <td>${num(h.endedUnixMs) ? fmtTime(h.endedUnixMs) : '<span class="dim">training</span>'}</td>
    <td>${h.done ? '✓' : ''}${h.validated ? ' validated' : ''}</td></tr>`);
  return `<section class="card"><div class="card-head"><h2>Hops</h2><span class="spacer"></span>
    <span class="caption">epoch ${num(t.epoch)}</span></div>
    <table id="hops" class="grid"><thead><tr><th>epoch</th><th>partition</th><th>worker</th><th>attempt</th>
    <th>started</th><th>ended</th><th>done</th></tr></thead><tbody>${rows.join('')}</tbody></table></section>`;
}

export function mount(root, [id], ctx) {
  ctx.title(id);
  root.innerHTML = '<p class="empty">loading…</p>';
  let trial = null;
  let exp = null;
  // metric name -> Map(attempt -> [[step, value], ...])
  const metrics = new Map();
  const dirtyMetrics = new Set();
  let timer = 0;
  let lastFlush = 0;
  let watch = null;
  let ready = false;
  let queue = [];
  let lastState = '';

  const seen = new Set();  // "attempt:seq" of the reports drawn (a report may come twice)

  function addReport(r) {
    const attempt = num(r.attempt) || 1;
    if (num(r.seq) > 0) {
      const key = `${attempt}:${num(r.seq)}`;
      if (seen.has(key)) return;
      seen.add(key);
    }
    for (const [name, value] of Object.entries(r.values ?? {})) {
      if (!metrics.has(name)) metrics.set(name, new Map());
      const byAttempt = metrics.get(name);
      if (!byAttempt.has(attempt)) byAttempt.set(attempt, []);
      byAttempt.get(attempt).push([Number(r.step ?? 0), Number(value)]);
      dirtyMetrics.add(name);
    }
  }

  function chartEl(name) {
    return document.getElementById(`metric-${name}`);
  }

  function renderMetric(name) {
    let el = chartEl(name);
    const box = root.querySelector('#metrics');
    if (!box) return;
    if (!el) {
      root.querySelector('#metrics-empty')?.remove();
      el = document.createElement('div');
      el.id = `metric-${name}`;
      el.className = 'chart chart-metric';
      box.appendChild(el);
    }
    const byAttempt = metrics.get(name);
    let reduced = false;
    const series = [...byAttempt.entries()].sort((a, b) => a[0] - b[0]).map(([attempt, data]) => {
      const shown = data.length > MAX_CHART_POINTS ? lttb(data, MAX_CHART_POINTS) : data;
      reduced = reduced || shown !== data;
      return { id: `attempt-${attempt}`, name: `attempt ${attempt}`, data: shown };
    });
    initChart(el)?.setOption(metricOption(name, series), { notMerge: true });
    el.title = reduced ? `reduced with LTTB to ${MAX_CHART_POINTS} points per attempt` : '';
  }

  function flushMetrics() {
    timer = 0;
    lastFlush = Date.now();
    if (!ctx.active) return;
    for (const name of dirtyMetrics) renderMetric(name);
    dirtyMetrics.clear();
  }

  function scheduleMetrics() {
    if (timer) return;
    timer = setTimeout(flushMetrics, Math.max(0, lastFlush + FLUSH_MS - Date.now()));
  }

  function renderTrial() {
    root.querySelector('#trial-summary').innerHTML = summary(trial, exp) + paramsTable(trial, exp);
    root.querySelector('#attempts-box').innerHTML = attemptsTable(trial);
    root.querySelector('#hops-box').innerHTML = hopsTable(trial);
    if (trial.segments?.length) loadLineage();
  }

  // pbt, pb2: the model's lineage needs the donors' segments, so every trial of the
  // experiment; read again when this trial begins or ends a segment.
  let lineageKey = '';
  async function loadLineage() {
    const key = `${trial.segments.length}:${num(trial.segments[trial.segments.length - 1].endedUnixMs)}`;
    if (key === lineageKey) return;
    lineageKey = key;
    try {
      const r = await api.listTrials(trial.experimentId);
      if (!ctx.active) return;
      const steps = lineage(r.trials ?? [], id);
      const box = root.querySelector('#lineage-box');
      if (!steps || !box) return;
      const resource = exp?.spec?.resource?.metric || 'step';
      box.innerHTML = lineageCard(steps, { resource, metric: objectives(exp?.spec)[0]?.metric ?? 'value' });
      drawSchedule(box.querySelector('#schedule'), steps, resource);
    } catch (e) {
      if (e?.status === 401) ctx.fail(e);
    }
  }

  async function loadLogs() {
    const pre = root.querySelector('#logs');
    const paths = root.querySelector('#log-paths');
    try {
      const l = await api.getTrialLogs(id, 200);
      if (!ctx.active) return;
      pre.classList.remove('error-text');
      pre.textContent = l.stderrTail || '(stderr is empty)';
      paths.textContent = [l.workerId && `on ${l.workerId}`, l.stdoutPath && `stdout ${l.stdoutPath}`,
        l.stderrPath && `stderr ${l.stderrPath}`].filter(Boolean).join(' · ');
    } catch (e) {
      if (!ctx.active) return;
      if (e?.status === 401) {
        ctx.fail(e);
        return;
      }
      // The worker may be gone, or the trial never ran: say why instead of the logs.
      pre.classList.add('error-text');
      pre.textContent = `logs unavailable: ${e.message}`;
    }
  }

  function handle(ev) {
    if (ev.trial && ev.trial.id === id) {
      trial = ev.trial;
      renderTrial();
      if (trial.state !== lastState) {
        lastState = trial.state;
        loadLogs();  // a trial that ended has its final stderr
      }
    } else if (ev.report && ev.report.trialId === id) {
      addReport(ev.report);
      scheduleMetrics();
    } else if (ev.experiment) {
      exp = ev.experiment;
    }
  }

  (async () => {
    let metricsResp;
    try {
      trial = await api.getTrial(id);
      if (!ctx.active) return;
      // GetTrialMetrics once the watch runs, so that no report falls between the two.
      const watching = startWatch(trial.experimentId);
      [exp, metricsResp] = await Promise.all([
        api.getExperiment(trial.experimentId).catch((e) => {
          if (e?.status === 401) throw e;
          return null;  // the trial shows without its experiment's spec
        }),
        watching.then(() => api.getTrialMetrics(id)),
      ]);
    } catch (e) {
      if (!ctx.active) return;
      watch?.close();
      root.innerHTML = `<p class="empty">Trial ${esc(id)} could not be loaded.</p>`;
      ctx.fail(e);
      return;
    }
    if (!ctx.active) return;
    lastState = trial.state;
    ctx.title(`${trial.id}${exp?.spec?.name ? ` (${exp.spec.name})` : ''}`);
    root.innerHTML = `
      <div class="page-head"><h1>Trial ${esc(trial.id)}</h1>
        <span class="dim">index ${num(trial.index)}</span>
        <span class="spacer"></span>
        <a href="#/experiments/${encodeURIComponent(trial.experimentId)}">← ${esc(trial.experimentId)}</a></div>
      <section class="card"><div id="trial-summary" class="two-col"></div></section>
      <section class="card"><div class="card-head"><h2>Metrics</h2><span class="spacer"></span>
        <span class="caption">against the step</span></div>
        <div id="metrics" class="metric-grid"><p id="metrics-empty" class="dim">No reports yet.</p></div></section>
      <section class="card"><div class="card-head"><h2>Attempts</h2></div><div id="attempts-box"></div></section>
      <div id="hops-box"></div>
      <div id="lineage-box"></div>
      <section class="card"><div class="card-head"><h2>Logs</h2><span class="spacer"></span>
        <span id="log-paths" class="caption"></span></div>
        <p class="caption">stderr, last 200 lines</p>
        <pre id="logs" class="logs">loading…</pre></section>`;
    renderTrial();
    for (const r of metricsResp.reports ?? []) addReport(r);
    flushMetrics();
    loadLogs();
    ready = true;
    for (const ev of queue) handle(ev);
    queue = [];
  })();

  // Returns a promise settled once rungd sends every change (the stream's first event).
  // After a reconnect: the reports the stream missed.
  function startWatch(experimentId) {
    let opened = false;
    let subscribed;
    const watching = new Promise((resolve) => { subscribed = resolve; });
    watch = watchExperiment(experimentId, {
      onEvent(ev) {
        // The first events repeat the trial as it is now: the page just redraws it.
        if (ready) handle(ev);
        else queue.push(ev);
      },
      onOpen() {
        ctx.live('live');
        if (opened && ready) reloadMetrics();
        opened = true;
        subscribed();
      },
      onDrop() { ctx.live('reconnecting…'); },
      onEnd() { ctx.live(''); },
      onError(e) {
        ctx.live('');
        if (e?.status === 401) ctx.fail(e);
      },
    });
    return watching;
  }

  async function reloadMetrics() {
    try {
      const r = await api.getTrialMetrics(id);
      if (!ctx.active) return;
      // addReport keeps each (attempt, seq) once: only the reports the stream missed are added.
      for (const rep of r.reports ?? []) addReport(rep);
      flushMetrics();
    } catch (e) {
      if (e?.status === 401) ctx.fail(e);
    }
  }

  return () => {
    clearTimeout(timer);
    watch?.close();
  };
}
