// #/ : every experiment the caller may see, newest first, refreshed every 2 s.

import { api } from './api.js';
import { ago, badge, esc, fmtInt, fmtNum, num, objectives, stateWord } from './format.js';

const STATES = ['all', 'running', 'pending', 'paused', 'completed', 'cancelled', 'failed'];
const POLL_MS = 2000;
const FILTER_KEY = 'rung-state-filter';

function progressCell(e) {
  const c = e.counts ?? {};
  const done = num(c.completed) + num(c.stopped) + num(c.failed);
  const total = num(e.spec?.budget?.maxTrials) || num(e.trialsCreated);
  const pct = total > 0 ? Math.min(100, (100 * done) / total) : 0;
  const running = num(c.running);
  return `<div class="progress" title="${done} of ${total} done, ${running} running">
      <div class="progress-bar"><span style="width:${pct.toFixed(1)}%"></span></div>
      <span class="progress-text">${fmtInt(done)}/${total ? fmtInt(total) : '?'}</span>
    </div>`;
}

function bestCell(e) {
  const objs = objectives(e.spec);
  const o = objs[0];
  if (!e.hasBest) {
    return objs.length > 1 ? '<span class="dim">Pareto set</span>' : '<span class="dim">-</span>';
  }
  return `<span class="num" title="${esc(String(e.bestValue))}">${fmtNum(e.bestValue)}</span>
    <span class="dim">${esc(o.metric)} ${o.maximize ? '↑' : '↓'}</span>`;
}

function row(e, now) {
  const id = esc(e.id);
  return `<tr data-id="${id}">
    <td class="name">${esc(e.spec?.name || '')}</td>
    <td><a href="#/experiments/${encodeURIComponent(e.id)}">${id}</a></td>
    <td>${badge(e.state)}</td>
    <td>${progressCell(e)}</td>
    <td>${bestCell(e)}</td>
    <td>${esc(e.owner || '-')}</td>
    <td class="dim" title="${esc(new Date(num(e.createdUnixMs)).toLocaleString())}">${ago(e.createdUnixMs, now)}</td>
  </tr>`;
}

export function mount(root, _params, ctx) {
  ctx.title('Experiments');
  let filter = sessionStorage.getItem(FILTER_KEY) || 'all';
  if (!STATES.includes(filter)) filter = 'all';
  let experiments = null;  // the last answer
  let timer = 0;

  root.innerHTML = `
    <div class="page-head">
      <h1>Experiments</h1>
      <label class="filter">state
        <select id="state-filter">${STATES.map((s) =>
          `<option value="${s}"${s === filter ? ' selected' : ''}>${s}</option>`).join('')}</select>
      </label>
      <span class="spacer"></span>
      <span id="experiments-count" class="dim"></span>
    </div>
    <table id="experiments" class="grid">
      <thead><tr><th>name</th><th>id</th><th>state</th><th>progress</th><th>best</th><th>owner</th><th>age</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="experiments-empty" class="empty" hidden></p>`;
  const tbody = root.querySelector('#experiments tbody');
  const empty = root.querySelector('#experiments-empty');
  const count = root.querySelector('#experiments-count');

  function render() {
    if (!experiments) return;
    const now = Date.now();
    const shown = experiments
      .filter((e) => filter === 'all' || stateWord(e.state) === filter)
      .sort((a, b) => num(b.createdUnixMs) - num(a.createdUnixMs) || num(b.seq) - num(a.seq));
    tbody.innerHTML = shown.map((e) => row(e, now)).join('');
    count.textContent = `${shown.length} of ${experiments.length}`;
    empty.hidden = shown.length > 0;
    if (!experiments.length) {
      empty.innerHTML = 'No experiments yet. Submit one with <code>rung submit spec.yaml</code>.';
    } else if (!shown.length) {
      empty.textContent = `No ${filter} experiments.`;
    }
  }

  root.querySelector('#state-filter').addEventListener('change', (ev) => {
    filter = ev.target.value;
    sessionStorage.setItem(FILTER_KEY, filter);
    render();
  });

  // Poll: each answer schedules the next ask, so slow answers never pile up.
  async function poll() {
    try {
      const r = await api.listExperiments();
      if (!ctx.active) return;
      experiments = r.experiments ?? [];
      ctx.clearError();
      render();
    } catch (e) {
      if (!ctx.active) return;
      ctx.fail(e);
      if (e?.status === 401) return;  // the sign-in form replaced the page
    }
    if (ctx.active) timer = setTimeout(poll, POLL_MS);
  }
  poll();

  return () => clearTimeout(timer);
}
