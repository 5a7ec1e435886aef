// ECharts option builders and downsampling helpers. ECharts is the classic script
// /assets/echarts.min.js (global `echarts`); every chart is created with initChart so that
// echarts.getInstanceByDom(element) finds it.

import { esc, fmtNum, fmtTime, num } from './format.js';

export const PALETTE = ['#3b6fb6', '#e07b39', '#3a9a5b', '#c8453b', '#8a63b8', '#8c6d52',
  '#d36fa8', '#6f7f8f', '#b5a532', '#2fa3b5'];
const GRID_LINE = { lineStyle: { color: '#eceef1' } };
const AXIS_LABEL = { color: '#5f6670', fontSize: 11 };
const TEXT = { fontFamily: 'inherit', fontSize: 11, color: '#3b4048' };

// A filled "x" (ECharts fills symbol paths; two bare strokes would not show).
export const X_SYMBOL = 'path://M2,0L5,3L8,0L10,2L7,5L10,8L8,10L5,7L2,10L0,8L3,5L0,2Z';

// The chart on `el`, created on first use.
export function initChart(el) {
  const echarts = globalThis.echarts;
  if (!echarts || !el) return null;
  return echarts.getInstanceByDom(el) || echarts.init(el, null, { renderer: 'canvas' });
}

// Largest-triangle-three-buckets: `points` ([[x, y], ...]) reduced to `threshold` points,
// keeping the first and the last (the same reduction rungd's GetCurves applies).
export function lttb(points, threshold) {
  const n = points.length;
  if (threshold >= n || threshold < 3) return points.slice();
  const out = [points[0]];
  const every = (n - 2) / (threshold - 2);
  let a = 0;
  for (let i = 0; i < threshold - 2; i++) {
    // The average of the next bucket is the third corner of the triangle.
    const nextStart = Math.floor((i + 1) * every) + 1;
    const nextEnd = Math.min(Math.floor((i + 2) * every) + 1, n);
    let ax = 0; let ay = 0;
    for (let j = nextStart; j < nextEnd; j++) { ax += points[j][0]; ay += points[j][1]; }
    const len = Math.max(1, nextEnd - nextStart);
    ax /= len; ay /= len;
    const start = Math.floor(i * every) + 1;
    const end = Math.floor((i + 1) * every) + 1;
    const [px, py] = points[a];
    let best = start; let bestArea = -1;
    for (let j = start; j < end; j++) {
      const area = Math.abs((px - ax) * (points[j][1] - py) - (px - points[j][0]) * (ay - py));
      if (area > bestArea) { bestArea = area; best = j; }
    }
    out.push(points[best]);
    a = best;
  }
  out.push(points[n - 1]);
  return out;
}

function baseOption() {
  return {
    animation: false,
    textStyle: TEXT,
    color: PALETTE,
  };
}

// ---- learning curves --------------------------------------------------------------------

// One trial's curve. rank: its place among the best trials (0 = best), or -1 when not among
// them; those are drawn thick and opaque, the others thin and faded.
export function curveSeries(id, data, { stopped = false, rank = -1, color = PALETTE[0] } = {}) {
  const highlighted = rank >= 0;
  const last = data.length ? data[data.length - 1] : null;
  return {
    id,
    name: id,
    type: 'line',
    data,
    showSymbol: data.length <= 1,
    symbol: 'circle',
    symbolSize: 4,
    z: highlighted ? 3 : 2,
    itemStyle: { color },
    lineStyle: {
      width: highlighted ? 2.2 : 1,
      opacity: highlighted ? 1 : 0.45,
      type: stopped ? 'dashed' : 'solid',
    },
    emphasis: { focus: 'series', lineStyle: { width: 2.5, opacity: 1 } },
    blur: { lineStyle: { opacity: 0.08 } },
    // A stopped trial was cut short: an "x" where it stopped.
    markPoint: {
      silent: true,
      symbol: X_SYMBOL,
      symbolSize: 8,
      itemStyle: { color },
      label: { show: false },
      data: stopped && last ? [{ coord: last, name: 'stopped' }] : [],
    },
  };
}

// The ASHA rungs: vertical lines on a series of their own (no points), so that every
// trial series holds exactly its curve.
export function rungSeries(levels) {
  return {
    id: '__rungs',
    name: 'rungs',
    type: 'line',
    data: [],
    silent: true,
    tooltip: { show: false },
    markLine: {
      silent: true,
      symbol: 'none',
      lineStyle: { color: '#9aa3ad', type: 'dotted', width: 1 },
      label: { position: 'insideEndTop', color: '#6f7780', fontSize: 10, formatter: '{b}' },
      // Hovering a trial blurs the other series; the rungs stay as they are.
      emphasis: { disabled: true },
      blur: { lineStyle: { opacity: 1 }, label: { opacity: 1 } },
      data: (levels ?? []).map((v, i) => ({ xAxis: Number(v), name: `rung ${i + 1}` })),
    },
  };
}

// The curve chart without its trial series. tip.span (the x range, kept up to date by the
// caller) decides which curves the tooltip lists: those with a point near the cursor.
export function curvesOption({ xMetric, metric, logY, rungLevels, maximize, tip }) {
  return {
    ...baseOption(),
    grid: { left: 56, right: 24, top: 24, bottom: 40 },
    xAxis: {
      type: 'value', name: xMetric, nameLocation: 'middle', nameGap: 24,
      scale: true, splitLine: GRID_LINE, axisLabel: AXIS_LABEL,
      // Off: the tooltip's pointer would put every curve in its emphasis state.
      axisPointer: { triggerEmphasis: false },
    },
    yAxis: {
      type: logY ? 'log' : 'value', name: metric, nameLocation: 'end',
      scale: true, splitLine: GRID_LINE, axisLabel: AXIS_LABEL,
    },
    tooltip: {
      trigger: 'axis',
      axisPointer: { type: 'line', lineStyle: { color: '#b8bfc7' } },
      confine: true,
      formatter: (params) => curveTooltip(params, { xMetric, metric, maximize, tip }),
    },
    dataZoom: [{ type: 'inside', xAxisIndex: 0, filterMode: 'none' }],
    series: [rungSeries(rungLevels)],
  };
}

function curveTooltip(params, { xMetric, metric, maximize, tip }) {
  const list = Array.isArray(params) ? params : [params];
  if (!list.length) return '';
  const at = Number(list[0].axisValue);
  const near = Math.max(1e-12, (tip?.span ?? 0) * 0.02);
  const rows = list
    .filter((p) => p.seriesId !== '__rungs' && Array.isArray(p.data) && Math.abs(p.data[0] - at) <= near)
    .sort((a, b) => (maximize ? b.data[1] - a.data[1] : a.data[1] - b.data[1]));
  if (!rows.length) return '';
  const shown = rows.slice(0, 10).map((p) =>
    `${p.marker}<b>${esc(p.seriesName)}</b> ${esc(metric)} ${fmtNum(p.data[1])} ` +
    `<span class="tip-dim">@ ${esc(xMetric)} ${fmtNum(p.data[0])}</span>`);
  if (rows.length > 10) shown.push(`<span class="tip-dim">… and ${rows.length - 10} more</span>`);
  return shown.join('<br>');
}

// ---- best value over time ---------------------------------------------------------------

// The running best of completed trials' results against their completion time.
export function bestOverTimeOption(trials, { metric, maximize }) {
  const done = trials
    .filter((t) => t.state === 'TRIAL_COMPLETED' && t.hasResult && num(t.endedUnixMs))
    .sort((a, b) => num(a.endedUnixMs) - num(b.endedUnixMs));
  const results = [];
  const best = [];
  let b;
  for (const t of done) {
    const at = num(t.endedUnixMs);
    const v = Number(t.result);
    results.push({ name: t.id, value: [at, v] });
    // An infeasible trial (it breaks a constraint) is never best.
    if (!t.infeasible && Number.isFinite(v) && (b === undefined || (maximize ? v > b : v < b))) b = v;
    if (b !== undefined) best.push([at, b]);
  }
  return {
    ...baseOption(),
    grid: { left: 56, right: 20, top: 20, bottom: 30 },
    xAxis: { type: 'time', splitLine: GRID_LINE, axisLabel: AXIS_LABEL },
    yAxis: { type: 'value', name: metric, scale: true, splitLine: GRID_LINE, axisLabel: AXIS_LABEL },
    tooltip: {
      trigger: 'item',
      formatter: (p) => `${esc(p.seriesId === 'best' ? 'best so far' : p.name)}<br>` +
        `${esc(metric)} ${fmtNum(p.value[1])}<br><span class="tip-dim">${fmtTime(p.value[0])}</span>`,
    },
    series: [
      { id: 'results', name: 'results', type: 'scatter', data: results, symbolSize: 4,
        itemStyle: { color: '#9aa3ad', opacity: 0.6 } },
      { id: 'best', name: 'best', type: 'line', step: 'end', data: best, showSymbol: false,
        lineStyle: { width: 2, color: PALETTE[0] }, itemStyle: { color: PALETTE[0] } },
    ],
  };
}

// ---- parallel coordinates ---------------------------------------------------------------

function axisOf(p, dim) {
  const axis = { dim, name: p.name, nameTextStyle: { fontSize: 11 }, axisLabel: AXIS_LABEL };
  if (p.type === 'CATEGORICAL') return { ...axis, type: 'category', data: p.values ?? [] };
  if (p.log) return { ...axis, type: 'log' };
  return p.type === 'INT' ? { ...axis, type: 'value', minInterval: 1, scale: true } : { ...axis, type: 'value', scale: true };
}

// One line per completed trial: its parameters in search-space order, then its result
// (null for a conditional parameter the trial does not have). Lines are coloured by the
// objective; the best trial is drawn thick.
export function parallelOption(spec, trials, { metric, maximize }, bestId) {
  const space = spec?.searchSpace ?? [];
  const axes = space.map((p, i) => axisOf(p, i));
  axes.push({ dim: space.length, name: metric || 'objective', type: 'value', scale: true,
    nameTextStyle: { fontSize: 11, fontWeight: 'bold' }, axisLabel: AXIS_LABEL });
  const data = [];
  let lo = Infinity; let hi = -Infinity;
  for (const t of trials) {
    if (t.state !== 'TRIAL_COMPLETED' || !t.hasResult) continue;
    const value = space.map((p) => {
      const pv = t.params?.[p.name];
      if (!pv) return null;
      if ('categoricalValue' in pv) return pv.categoricalValue;
      if ('intValue' in pv) return Number(pv.intValue);
      if ('floatValue' in pv) return Number(pv.floatValue);
      return null;
    });
    const r = Number(t.result);
    value.push(r);
    if (Number.isFinite(r)) { lo = Math.min(lo, r); hi = Math.max(hi, r); }
    const item = { name: t.id, value };
    if (t.id === bestId) item.lineStyle = { width: 3.5, opacity: 1 };
    data.push(item);
  }
  if (!(hi > lo)) { lo = Number.isFinite(lo) ? lo - 1 : 0; hi = lo + 2; }
  const colors = ['#2c5aa0', '#7fb2d9', '#f3c27a', '#d9572b'];  // good (blue) to bad (red)
  return {
    ...baseOption(),
    parallel: { left: 48, right: 120, top: 36, bottom: 28, parallelAxisDefault: { nameGap: 12 } },
    parallelAxis: axes,
    visualMap: {
      type: 'continuous', dimension: space.length, min: lo, max: hi, calculable: true,
      right: 4, top: 'middle', itemHeight: 120, precision: 3, textStyle: AXIS_LABEL,
      inRange: { color: maximize ? [...colors].reverse() : colors },
    },
    tooltip: {
      trigger: 'item',
      formatter: (p) => `<b>${esc(p.name)}</b><br>` + axes.map((a, i) =>
        `${esc(a.name)}: ${esc(typeof p.value?.[i] === 'number' ? fmtNum(p.value[i]) : (p.value?.[i] ?? '-'))}`).join('<br>'),
    },
    series: [{
      id: 'trials', name: 'trials', type: 'parallel', data,
      lineStyle: { width: 1, opacity: 0.5 },
      emphasis: { lineStyle: { width: 3, opacity: 1 } },
      progressive: 1000,
    }],
  };
}

// ---- Pareto front -----------------------------------------------------------------------

// Indices of the non-dominated points (each objective with its goal).
export function paretoFront(points, goals) {
  const better = (a, b, k) => (goals[k].maximize ? a[k] > b[k] : a[k] < b[k]);
  const dominates = (a, b) => goals.every((_, k) => !better(b, a, k)) && goals.some((_, k) => better(a, b, k));
  const front = [];
  for (let i = 0; i < points.length; i++) {
    if (!points.some((q, j) => j !== i && dominates(q, points[i]))) front.push(i);
  }
  return front;
}

// The completed trials on the first two objectives, the front highlighted and joined by the
// staircase that bounds what it dominates.
export function paretoOption(trials, objs) {
  const goals = objs.slice(0, 2);
  const pts = [];
  const infeasible = [];
  for (const t of trials) {
    if (t.state !== 'TRIAL_COMPLETED' || !t.hasResult || (t.results?.length ?? 0) < 2) continue;
    const p = [Number(t.results[0]), Number(t.results[1])];
    if (!p.every(Number.isFinite)) continue;
    (t.infeasible ? infeasible : pts).push({ name: t.id, value: p });
  }
  const frontIdx = new Set(paretoFront(pts.map((p) => p.value), goals));
  const front = pts.filter((_, i) => frontIdx.has(i)).sort((a, b) => a.value[0] - b.value[0]);
  const rest = pts.filter((_, i) => !frontIdx.has(i));
  const stairs = [];
  front.forEach((p, i) => {
    if (i > 0) {
      const a = front[i - 1].value; const b = p.value;
      stairs.push(goals[0].maximize ? [a[0], b[1]] : [b[0], a[1]]);
    }
    stairs.push(p.value);
  });
  const tip = (p) => `<b>${esc(p.name || 'front')}</b><br>${esc(goals[0].metric)} ${fmtNum(p.value[0])}<br>` +
    `${esc(goals[1].metric)} ${fmtNum(p.value[1])}`;
  const dir = (g) => (g.maximize ? ' ↑' : ' ↓');
  return {
    ...baseOption(),
    grid: { left: 60, right: 24, top: 28, bottom: 40 },
    xAxis: { type: 'value', name: goals[0].metric + dir(goals[0]), nameLocation: 'middle', nameGap: 24,
      scale: true, splitLine: GRID_LINE, axisLabel: AXIS_LABEL },
    yAxis: { type: 'value', name: goals[1].metric + dir(goals[1]), scale: true, splitLine: GRID_LINE, axisLabel: AXIS_LABEL },
    tooltip: { trigger: 'item', formatter: tip },
    legend: { top: 0, right: 10, textStyle: AXIS_LABEL, data: ['dominated', 'infeasible', 'Pareto front'] },
    series: [
      { id: 'dominated', name: 'dominated', type: 'scatter', data: rest, symbolSize: 5,
        itemStyle: { color: '#9aa3ad', opacity: 0.7 } },
      { id: 'infeasible', name: 'infeasible', type: 'scatter', data: infeasible, symbol: X_SYMBOL, symbolSize: 6,
        itemStyle: { color: '#c9ced4' } },
      { id: 'front-line', name: 'Pareto front', type: 'line', data: stairs, showSymbol: false, silent: true,
        lineStyle: { color: PALETTE[3], width: 1.5 }, itemStyle: { color: PALETTE[3] }, tooltip: { show: false } },
      { id: 'front', name: 'Pareto front', type: 'scatter', data: front, symbolSize: 8, z: 3,
        itemStyle: { color: PALETTE[3] } },
    ],
  };
}

// ---- ablation ---------------------------------------------------------------------------

// Each variant's change against the base, with ±1 standard deviation; significant ones solid
// and marked ✓, the others faded. Positive harm (worse than the base) in red.
export function ablationOption(results) {
  const vs = (results?.variants ?? []).filter((v, i) => i > 0 && v.kind !== 'base' && v.delta !== undefined);
  const names = vs.map((v) => v.name);
  const bars = vs.map((v) => ({
    name: v.name,
    value: Number(v.delta),
    itemStyle: { color: Number(v.harm ?? 0) > 0 ? '#d0604f' : '#4f86c6', opacity: v.significant ? 1 : 0.45 },
    label: { show: Boolean(v.significant), formatter: '✓', position: Number(v.delta) >= 0 ? 'right' : 'left' },
  }));
  const errors = vs.map((v, i) => {
    const d = Number(v.delta); const sd = Number(v.stddev ?? 0);
    return [i, d - sd, d + sd];
  });
  return {
    ...baseOption(),
    grid: { left: 8, right: 40, top: 16, bottom: 28, containLabel: true },
    xAxis: { type: 'value', name: `change in ${results?.objective ?? ''}`, nameLocation: 'middle', nameGap: 22,
      splitLine: GRID_LINE, axisLabel: AXIS_LABEL },
    yAxis: { type: 'category', data: names, inverse: true, axisLabel: AXIS_LABEL },
    tooltip: {
      trigger: 'item',
      formatter: (p) => {
        const v = vs[p.dataIndex];
        if (!v) return '';
        return `<b>${esc(v.name)}</b> (${esc(v.kind)})<br>change ${fmtNum(v.delta)}` +
          (v.stddev !== undefined ? ` ± ${fmtNum(v.stddev)}` : '') +
          (v.p !== undefined ? `<br>p ${fmtNum(v.p)}${v.significant ? ' ✓' : ''}` : '');
      },
    },
    series: [
      { id: 'delta', name: 'change', type: 'bar', data: bars, barMaxWidth: 18 },
      {
        id: 'stddev', name: 'sd', type: 'custom', data: errors, z: 3, silent: true,
        encode: { x: [1, 2], y: 0 },
        renderItem: (params, api) => {
          const y = api.value(0);
          const lo = api.coord([api.value(1), y]);
          const hi = api.coord([api.value(2), y]);
          const h = api.size([0, 1])[1] * 0.2;
          const style = { stroke: '#3b4048', lineWidth: 1 };
          return {
            type: 'group',
            children: [
              { type: 'line', shape: { x1: lo[0], y1: lo[1], x2: hi[0], y2: hi[1] }, style },
              { type: 'line', shape: { x1: lo[0], y1: lo[1] - h, x2: lo[0], y2: lo[1] + h }, style },
              { type: 'line', shape: { x1: hi[0], y1: hi[1] - h, x2: hi[0], y2: hi[1] + h }, style },
            ],
          };
        },
      },
    ],
  };
}

// ---- one trial's metric -----------------------------------------------------------------

// A small chart of one metric against the step; one series per attempt (a retried attempt
// starts again from its first step).
export function metricOption(name, series) {
  return {
    ...baseOption(),
    title: { text: name, left: 8, top: 4, textStyle: { fontSize: 12, fontWeight: 600, color: '#3b4048' } },
    grid: { left: 52, right: 16, top: 30, bottom: 26 },
    xAxis: { type: 'value', name: 'step', nameLocation: 'middle', nameGap: 20, scale: true,
      splitLine: GRID_LINE, axisLabel: AXIS_LABEL },
    yAxis: { type: 'value', scale: true, splitLine: GRID_LINE, axisLabel: AXIS_LABEL },
    tooltip: {
      trigger: 'axis',
      formatter: (ps) => ps.map((p) => `${p.marker}${esc(p.seriesName)}: ${esc(name)} ${fmtNum(p.data[1])} ` +
        `<span class="tip-dim">@ step ${fmtNum(p.data[0])}</span>`).join('<br>'),
    },
    legend: series.length > 1 ? { right: 8, top: 4, textStyle: AXIS_LABEL } : { show: false },
    series: series.map((s) => ({
      id: s.id, name: s.name, type: 'line', data: s.data, showSymbol: s.data.length <= 1,
      symbolSize: 4, lineStyle: { width: 1.5 },
    })),
  };
}
