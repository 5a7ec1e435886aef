// #/workers : every worker, its slots and what runs on them, refreshed every 2 s.

import { api } from './api.js';
import { ago, badge, esc, num } from './format.js';

const POLL_MS = 2000;

// "4 CPU" or "GPU 0, 1" (ids as the worker named them), with a mixed worker showing both.
function slotsCell(w) {
  const slots = w.slots ?? [];
  const gpus = slots.filter((s) => s.gpu);
  const cpus = slots.length - gpus.length;
  const parts = [];
  if (cpus) parts.push(`${cpus} CPU`);
  if (gpus.length) parts.push(`GPU ${gpus.map((s) => esc(s.gpu)).join(', ')}`);
  return parts.join(' + ') || '<span class="dim">none</span>';
}

// Each running trial with the slots it holds; another user's trial is not named.
function runningCell(w, running) {
  if (!running.length) return '<span class="dim">idle</span>';
  const gpuOf = new Map((w.slots ?? []).map((s) => [num(s.id), s.gpu]));
  return running.map((r) => {
    const slots = (r.slots ?? []).map((s) => {
      const gpu = gpuOf.get(num(s));
      return gpu ? `${num(s)} (GPU ${esc(gpu)})` : String(num(s));
    }).join(', ');
    const what = r.trialId
      ? `<a href="#/trials/${encodeURIComponent(r.trialId)}">${esc(r.trialId)}</a>` +
        (r.experimentId ? ` <span class="dim">of <a href="#/experiments/${encodeURIComponent(r.experimentId)}">${esc(r.experimentId)}</a></span>` : '')
      : '<span class="dim">another user\'s trial</span>';
    return `<div class="running">slot ${slots || '-'}: ${what}</div>`;
  }).join('');
}

function row(ws, now) {
  const w = ws.worker ?? {};
  const running = ws.running ?? [];
  const total = (w.slots ?? []).length;
  const busy = running.reduce((n, r) => n + (r.slots?.length ?? 0), 0);
  const labels = Object.entries(w.labels ?? {}).sort()
    .map(([k, v]) => `<span class="chip">${esc(k)}=${esc(v)}</span>`).join(' ');
  const extra = [w.addr && `address ${w.addr}`,
    w.partitions?.length && `partitions ${w.partitions.join(', ')}`].filter(Boolean).join('; ');
  return `<tr data-id="${esc(w.id)}"${extra ? ` title="${esc(extra)}"` : ''}>
    <td class="mono">${esc(w.id)}</td>
    <td>${esc(w.host || '-')}</td>
    <td>${badge(w.state)}</td>
    <td>${slotsCell(w)}</td>
    <td class="num">${busy} / ${total}</td>
    <td>${runningCell(w, running)}</td>
    <td>${labels || '<span class="dim">-</span>'}</td>
    <td class="dim">${ago(w.lastHeartbeatUnixMs, now)}</td>
    <td class="dim">${esc(w.version || '-')}</td>
  </tr>`;
}

export function mount(root, _params, ctx) {
  ctx.title('Workers');
  let timer = 0;
  root.innerHTML = `
    <div class="page-head"><h1>Workers</h1><span class="spacer"></span>
      <span id="workers-count" class="dim"></span></div>
    <table id="workers" class="grid">
      <thead><tr><th>id</th><th>host</th><th>state</th><th>slots</th><th>busy</th><th>running</th>
        <th>labels</th><th>last heartbeat</th><th>version</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="workers-empty" class="empty" hidden>No worker has connected. Start one with
      <code>rung-worker --server HOST:7411</code>.</p>`;
  const tbody = root.querySelector('#workers tbody');

  function render(list) {
    const now = Date.now();
    // Connected first, then by id.
    const rank = (w) => (w.worker?.state === 'WORKER_CONNECTED' ? 0 : 1);
    const sorted = [...list].sort((a, b) => rank(a) - rank(b) ||
      String(a.worker?.id).localeCompare(String(b.worker?.id), undefined, { numeric: true }));
    tbody.innerHTML = sorted.map((w) => row(w, now)).join('');
    root.querySelector('#workers-empty').hidden = list.length > 0;
    const connected = list.filter((w) => w.worker?.state === 'WORKER_CONNECTED').length;
    root.querySelector('#workers-count').textContent = `${connected} of ${list.length} connected`;
  }

  async function poll() {
    try {
      const r = await api.listWorkers();
      if (!ctx.active) return;
      ctx.clearError();
      render(r.workers ?? []);
    } catch (e) {
      if (!ctx.active) return;
      ctx.fail(e);
    }
    if (ctx.active) timer = setTimeout(poll, POLL_MS);
  }
  poll();

  return () => clearTimeout(timer);
}
