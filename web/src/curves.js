// The experiment page's learning-curve chart: GetCurves' points, then the watch stream's
// reports appended live.
//
// Series: one per trial (id = name = the trial id, data = [[x, y], ...] exactly as GetCurves
// returned them, then live points), plus "__rungs", an empty series carrying the ASHA rungs'
// vertical lines. Changed series are merged into the chart by id, at most 4 times a second.

import { api } from './api.js';
import { curvesOption, curveSeries, initChart, PALETTE } from './charts.js';
import { betterFirst, esc, fmtInt, trialScore } from './format.js';

export const MAX_POINTS = 200000;   // asked of GetCurves: the server downsamples to fit
const MAX_TRIALS = 2000;     // above this, only the best (and the running) are drawn
const BEST_HIGHLIGHTED = 5;  // the best trials are drawn thick
const FLUSH_MS = 250;        // at most 4 updates a second, each within 250 ms

const RUNNING = new Set(['TRIAL_RUNNING', 'TRIAL_ASSIGNED']);

// el: the chart's container; captionEl: the line under it; trials: the page's Map of trials
// (id -> Trial), read when styling; ctx: the view's context.
export function createCurves({ el, captionEl, logEl, metricEl, experimentId, trials, ctx }) {
  let exp = null;
  let metric = '';         // asked for ('' = the objective's)
  let resp = null;         // the last GetCurves answer, without its curves
  const series = new Map();  // trial id -> { data, stopped, rank, color }
  let top = null;          // when limited: the ids of the best MAX_TRIALS trials
  let ranks = new Map();   // trial id -> rank among the BEST_HIGHLIGHTED best
  let loading = false;
  let pending = [];        // reports that came while GetCurves was in flight
  let loadSeq = 0;
  let loadedAt = 0;
  let full = true;         // the whole option must be set again
  const dirty = new Set(); // series to merge
  let timer = 0;
  let lastFlush = 0;
  let logY = false;
  const tip = { span: 0 };
  let minX = Infinity; let maxX = -Infinity;
  let chart = null;

  const goal = () => {
    const o = exp?.spec?.objectives?.[0] ?? exp?.spec?.objective;
    return { maximize: o?.goal === 'MAXIMIZE' };
  };

  function colorOf(id) {
    const t = trials.get(id);
    const i = t ? Number(t.index ?? 0) : [...id].reduce((h, c) => h + c.charCodeAt(0), 0);
    return PALETTE[i % PALETTE.length];
  }

  // Whether a trial's curve is drawn: all of them, or with more than MAX_TRIALS trials the
  // best ones and those running.
  function drawn(id) {
    if (!top) return true;
    return top.has(id) || RUNNING.has(trials.get(id)?.state);
  }

  function rankTrials() {
    const { maximize } = goal();
    const cmp = betterFirst(maximize);
    const scored = [...trials.values()].filter((t) => trialScore(t) !== undefined)
      .sort((a, b) => cmp(trialScore(a), trialScore(b)));
    const next = new Map(scored.slice(0, BEST_HIGHLIGHTED).map((t, i) => [t.id, i]));
    for (const id of new Set([...ranks.keys(), ...next.keys()])) {
      if (ranks.get(id) !== next.get(id) && series.has(id)) dirty.add(id);
    }
    ranks = next;
    return scored;
  }

  function seriesOption(id) {
    const s = series.get(id);
    return curveSeries(id, s.data, {
      stopped: trials.get(id)?.state === 'TRIAL_STOPPED',
      rank: ranks.has(id) ? ranks.get(id) : -1,
      color: s.color,
    });
  }

  function extend(x) {
    if (x < minX) minX = x;
    if (x > maxX) maxX = x;
    tip.span = maxX > minX ? maxX - minX : Math.abs(maxX) || 1;
  }

  function points() {
    let n = 0;
    for (const s of series.values()) n += s.data.length;
    return n;
  }

  function caption() {
    if (!resp) {
      captionEl.textContent = loading ? 'loading curves…' : '';
      return;
    }
    const parts = [`${fmtInt(series.size)} trials, ${fmtInt(points())} points`];
    if (resp.downsampled) {
      parts.push(`downsampled: each curve reduced with LTTB to fit ${fmtInt(MAX_POINTS)} points`);
    }
    if (top) {
      const running = [...trials.values()].filter((t) => RUNNING.has(t.state)).length;
      parts.push(`${fmtInt(trials.size)} trials: showing the ${fmtInt(MAX_TRIALS)} best and the ${fmtInt(running)} running`);
    }
    if (!series.size) parts.push(`no trial has reported ${resp.metric || 'the metric'} yet`);
    captionEl.innerHTML = parts.map(esc).join(' · ');
  }

  function flush() {
    timer = 0;
    lastFlush = Date.now();
    if (!ctx.active || !resp) return;
    chart = chart || initChart(el);
    if (!chart) return;
    if (full) {
      full = false;
      dirty.clear();
      const option = curvesOption({
        xMetric: resp.xMetric || 'step',
        metric: resp.metric,
        logY,
        rungLevels: exp?.rungLevels ?? [],
        maximize: goal().maximize,
        tip,
      });
      option.series.push(...[...series.keys()].map(seriesOption));
      chart.setOption(option, { notMerge: true });
    } else if (dirty.size) {
      const changed = [...dirty].filter((id) => series.has(id)).map(seriesOption);
      dirty.clear();
      if (changed.length) chart.setOption({ series: changed });
    }
    caption();
    updateLogToggle();
    // Live points pile up past what GetCurves would answer: ask again (it downsamples).
    if (!loading && points() > 2 * MAX_POINTS && Date.now() - loadedAt > 10000) load();
  }

  function schedule() {
    if (timer) return;
    timer = setTimeout(flush, Math.max(0, lastFlush + FLUSH_MS - Date.now()));
  }

  function addSeries(id) {
    const s = { data: [], color: colorOf(id) };
    series.set(id, s);
    dirty.add(id);
    return s;
  }

  // Appends a watch report to its trial's curve.
  function apply(r) {
    if (!resp) return;
    const y = r.values?.[resp.metric];
    if (y === undefined || y === null) return;
    const x = resp.xMetric && resp.xMetric !== 'step' ? r.values?.[resp.xMetric] : r.step ?? 0;
    if (x === undefined || x === null) return;
    const id = r.trialId;
    if (!id || !drawn(id)) return;
    const s = series.get(id) ?? addSeries(id);
    const p = [Number(x), Number(y)];
    s.data.push(p);
    extend(p[0]);
    dirty.add(id);
    schedule();
  }

  // `first`: the experiment page's GetCurves, already asked for (once its watch had started).
  // Reports that come while the call is in flight wait in `pending`; those the answer already
  // holds (at or below a curve's last attempt and seq) are dropped, the others appended. A
  // call that fails is tried again, 2 s later and then less often, keeping what waits.
  let retryMs = 2000;
  let retryTimer = 0;
  async function load(first) {
    const seq = ++loadSeq;
    clearTimeout(retryTimer);
    loading = true;
    caption();
    let r;
    try {
      r = await (first ?? api.getCurves(experimentId, metric, MAX_POINTS));
    } catch (e) {
      if (!ctx.active || seq !== loadSeq) return;
      if (e?.status === 401 || e?.status === 403 || e?.status === 404) {
        loading = false;
        ctx.fail(e);
        return;
      }
      captionEl.textContent = `the curves could not be loaded (${e.message}); trying again`;
      retryTimer = setTimeout(() => load(), retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
      return;
    }
    retryMs = 2000;
    if (!ctx.active || seq !== loadSeq) return;
    loading = false;
    loadedAt = Date.now();
    resp = {
      metric: r.metric ?? metric,
      xMetric: r.xMetric || 'step',
      points: Number(r.points ?? 0),
      downsampled: Boolean(r.downsampled),
    };
    series.clear();
    minX = Infinity; maxX = -Infinity;
    const scored = rankTrials();
    top = trials.size > MAX_TRIALS ? new Set(scored.slice(0, MAX_TRIALS).map((t) => t.id)) : null;
    for (const c of r.curves ?? []) {
      if (!drawn(c.trialId)) continue;
      const xs = c.x ?? []; const ys = c.y ?? [];
      const data = new Array(Math.min(xs.length, ys.length));
      for (let i = 0; i < data.length; i++) {
        data[i] = [Number(xs[i]), Number(ys[i])];
        extend(data[i][0]);
      }
      series.set(c.trialId, { data, color: colorOf(c.trialId) });
    }
    full = true;
    const last = new Map((r.curves ?? []).map((c) => [c.trialId, [Number(c.lastAttempt ?? 0), Number(c.lastSeq ?? 0)]]));
    const late = pending;
    pending = [];
    for (const rep of late) {
      const [attempt, seq] = last.get(rep.trialId) ?? [0, 0];
      const a = Number(rep.attempt ?? 0); const q = Number(rep.seq ?? 0);
      if (a > attempt || (a === attempt && q > seq)) apply(rep);
    }
    fillMetricSelect();
    flush();
  }

  function updateLogToggle() {
    if (!logEl) return;
    let positive = true;
    outer: for (const s of series.values()) {
      for (const p of s.data) if (!(p[1] > 0)) { positive = false; break outer; }
    }
    logEl.disabled = !positive && !logY;
    logEl.parentElement.title = positive ? '' : 'a log scale needs positive values';
  }

  function fillMetricSelect() {
    if (!metricEl) return;
    const names = new Set();
    if (resp?.metric) names.add(resp.metric);
    for (const t of trials.values()) for (const k of Object.keys(t.lastMetrics ?? {})) names.add(k);
    if (resp?.xMetric) names.delete(resp.xMetric);
    const current = resp?.metric ?? metric;
    metricEl.innerHTML = [...names].sort().map((n) =>
      `<option value="${esc(n)}"${n === current ? ' selected' : ''}>${esc(n)}</option>`).join('');
  }

  logEl?.addEventListener('change', () => {
    logY = logEl.checked;
    chart?.setOption({ yAxis: { type: logY ? 'log' : 'value' } });
  });
  metricEl?.addEventListener('change', () => {
    metric = metricEl.value;
    load();
  });

  return {
    load,
    setExperiment(e) {
      const levels = JSON.stringify(exp?.rungLevels ?? []);
      exp = e;
      if (chart && resp && levels !== JSON.stringify(e.rungLevels ?? [])) full = true;
      schedule();
    },
    // A trial changed (or appeared): its style (stopped: dashed), the best ranks, and for a
    // trial new to the page an empty series of its own.
    trialsChanged(ids, added) {
      if (!resp) return;
      for (const id of ids) {
        if (series.has(id)) dirty.add(id);
        else if (added.has(id) && drawn(id)) addSeries(id);
      }
      rankTrials();
      schedule();
    },
    report(r) {
      if (loading || !resp) pending.push(r);
      else apply(r);
    },
    highlight(id, on) {
      if (chart && series.has(id)) chart.dispatchAction({ type: on ? 'highlight' : 'downplay', seriesId: id });
    },
    dispose() {
      clearTimeout(timer);
      clearTimeout(retryTimer);
      loadSeq++;
    },
  };
}
