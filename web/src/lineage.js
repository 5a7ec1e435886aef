// Population-based training (pbt, pb2): a member's lineage, as `rung lineage` computes it
// (client/cpp/convert.cc's Lineage): the segments that trained the model a trial holds, from
// scratch, each with the member that trained it; and its drawing on the trial page, a table
// and the hyperparameter schedule.

import { initChart } from './charts.js';
import { esc, fmtNum, fmtParam, num, paramValue } from './format.js';

// [{trialId, segment}] from scratch to now, or null when the chain breaks.
export function lineage(trials, trialId) {
  const byId = new Map(trials.map((t) => [t.id, t]));
  let t = byId.get(trialId);
  if (!t?.segments?.length) return null;
  const total = trials.reduce((n, x) => n + (x.segments?.length ?? 0), 0);
  const out = [];
  let attempt = 0;
  let upto = -1;
  let before = Infinity;
  while (out.length <= total) {
    const segs = t.segments;
    let i = segs.length - 1;
    if (attempt > 0) {
      // The segment whose attempts include the one whose checkpoint was taken.
      while (i >= 0 && num(segs[i].attempt) > attempt) i--;
      if (i >= 0 && Number(segs[i].end ?? 0) !== upto) i = -1;
    } else if (upto >= 0) {
      while (i >= 0 && !(Number(segs[i].end ?? 0) === upto && num(segs[i].endedUnixMs) &&
                         num(segs[i].endedUnixMs) <= before)) i--;
    }
    if (i < 0) return null;
    for (; i >= 0; i--) {
      const s = segs[i];
      out.push({ trialId: t.id, segment: s });
      if (s.parentTrialId || !Number(s.start ?? 0)) break;
    }
    const first = out[out.length - 1].segment;
    if (i < 0 || !first.parentTrialId) return out.reverse();
    t = byId.get(first.parentTrialId);
    if (!t) return null;
    attempt = num(first.parentAttempt);
    upto = Number(first.parentResource ?? 0);
    before = num(first.startedUnixMs);
  }
  return null;
}

function params(s) {
  return Object.keys(s.params ?? {}).sort()
    .map((k) => `${esc(k)}=${esc(fmtParam(s.params[k]))}`).join(' ');
}

// The card's HTML; draw() puts the schedule in it once it is in the page.
export function lineageCard(steps, { resource, metric }) {
  const rows = steps.map(({ trialId, segment: s }) => `<tr>
      <td class="num">${fmtNum(Number(s.start ?? 0))}–${fmtNum(Number(s.end ?? 0))}</td>
      <td><a href="#/trials/${encodeURIComponent(trialId)}">${esc(trialId)}</a></td>
      <td class="num">${s.hasValue ? fmtNum(s.value) : '-'}</td><td>${params(s)}</td>
      <td>${s.parentTrialId ? `took <a href="#/trials/${encodeURIComponent(s.parentTrialId)}">${
        esc(s.parentTrialId)}</a>'s checkpoint at ${fmtNum(Number(s.parentResource ?? 0))}` : ''}</td></tr>`);
  const members = new Set(steps.map((x) => x.trialId)).size;
  const exploits = steps.filter((x) => x.segment.parentTrialId).length;
  return `<section class="card"><div class="card-head"><h2>Lineage</h2><span class="spacer"></span>
      <span class="caption">${steps.length} segments by ${members} member${members === 1 ? '' : 's'},
      ${exploits} exploit${exploits === 1 ? '' : 's'}</span></div>
    <div id="schedule" class="chart chart-sm"></div>
    <table id="lineage" class="grid"><thead><tr><th>${esc(resource)}</th><th>trained by</th>
      <th>${esc(metric)}</th><th>parameters</th><th></th></tr></thead><tbody>${rows.join('')}</tbody></table>
    </section>`;
}

// The hyperparameter schedule of the model: each numeric parameter against the resource, as
// steps (log axis when every value is positive and they span a decade).
export function drawSchedule(el, steps, resource) {
  const names = new Set();
  for (const { segment: s } of steps) {
    for (const [k, pv] of Object.entries(s.params ?? {})) {
      if (typeof paramValue(pv) === 'number') names.add(k);
    }
  }
  const series = [...names].sort().map((k) => {
    const data = [];
    for (const { segment: s } of steps) {
      const v = paramValue(s.params?.[k]);
      if (typeof v !== 'number') continue;
      data.push([Number(s.start ?? 0), v], [Number(s.end ?? 0), v]);
    }
    return { name: k, type: 'line', data, showSymbol: false, lineStyle: { width: 1.5 } };
  });
  const values = series.flatMap((s) => s.data.map((p) => p[1]));
  const log = values.length > 0 && values.every((v) => v > 0) &&
    Math.max(...values) / Math.min(...values) >= 10;
  initChart(el)?.setOption({
    animation: false,
    grid: { left: 56, right: 16, top: 28, bottom: 26 },
    legend: { right: 8, top: 2 },
    tooltip: { trigger: 'axis' },
    xAxis: { type: 'value', name: resource, nameLocation: 'middle', nameGap: 20 },
    yAxis: { type: log ? 'log' : 'value', scale: true },
    series,
  }, { notMerge: true });
}
