// The experiment page's trials table: sortable by any column, one <tr data-id> per trial,
// a detail row under a failed trial with its reason. Only the first 500 rows of the sorted
// order are rendered ("show more" adds 500), so 10,000 trials stay fast.

import {
  badge, esc, fmtNum, num, objectives, paramValue, runBy, stateWord,
} from './format.js';

const PAGE = 500;
const STATE_ORDER = ['running', 'assigned', 'waiting', 'pending', 'paused', 'completed', 'stopped', 'failed'];

function columnsOf(exp, trials) {
  const spec = exp?.spec ?? {};
  const objs = objectives(spec);
  const resource = spec.resource?.metric || 'step';
  const cols = [
    { key: 'index', label: '#', num: true, get: (t) => num(t.index), show: (t) => String(num(t.index)) },
    { key: 'id', label: 'id', get: (t) => t.id,
      show: (t) => `<a href="#/trials/${encodeURIComponent(t.id)}">${esc(t.id)}</a>` },
    { key: 'state', label: 'state', get: (t) => STATE_ORDER.indexOf(stateWord(t.state)), num: true,
      show: (t) => badge(t.state) + (t.stopRequested && !t.state.endsWith('STOPPED') ? ' <span class="dim">stopping</span>' : '') },
    { key: 'attempt', label: 'attempt', num: true, get: (t) => num(t.attempt), show: (t) => String(num(t.attempt)) },
  ];
  if (objs.length > 1) {
    objs.forEach((o, i) => cols.push({
      key: `result:${i}`, label: o.metric, num: true, goal: o.maximize,
      get: (t) => (t.hasResult && t.results?.[i] !== undefined ? Number(t.results[i]) : undefined),
    }));
  } else {
    cols.push({ key: 'result', label: 'result', title: objs[0].metric, num: true, goal: objs[0].maximize,
      get: (t) => (t.hasResult ? Number(t.result) : undefined) });
  }
  cols.push(
    { key: 'best', label: 'best', title: `best ${objs[0].metric} reported`, num: true, goal: objs[0].maximize,
      get: (t) => (t.hasBestValue ? Number(t.bestValue) : undefined) },
    { key: 'reached', label: resource === 'step' ? 'steps' : `${resource} reached`, num: true,
      get: (t) => (resource === 'step' ? Number(t.lastStep ?? 0) : Number(t.resourceReached ?? 0)) },
    { key: 'worker', label: 'worker', get: (t) => runBy(t), show: (t) => esc(runBy(t) || '-') },
  );
  // The parameters: the search space's, in its order; an ablation study has none, so take
  // the names its trials carry.
  let names = (spec.searchSpace ?? []).map((p) => p.name);
  if (!names.length) {
    const seen = new Set();
    let n = 0;
    for (const t of trials.values()) {
      for (const k of Object.keys(t.params ?? {})) seen.add(k);
      if (++n >= 100) break;
    }
    names = [...seen].sort();
  }
  for (const name of names) {
    cols.push({
      key: `param:${name}`, label: name, param: true,
      get: (t) => paramValue(t.params?.[name]),
      show: (t) => {
        const pv = t.params?.[name];
        const v = paramValue(pv);
        if (v === undefined) return '<span class="dim">-</span>';
        return esc(typeof v === 'number' && !('intValue' in pv) ? fmtNum(v) : String(v));
      },
    });
  }
  for (const c of cols) {
    c.num = c.num || false;
    if (!c.show) c.show = (t) => { const v = c.get(t); return v === undefined ? '<span class="dim">-</span>' : esc(fmtNum(v)); };
  }
  return cols;
}

// Missing values sort last whichever the direction.
function compare(a, b, dir) {
  const am = a === undefined || a === null || a === '' || (typeof a === 'number' && Number.isNaN(a));
  const bm = b === undefined || b === null || b === '' || (typeof b === 'number' && Number.isNaN(b));
  if (am || bm) return am - bm;
  if (typeof a === 'number' && typeof b === 'number') return dir * (a - b);
  return dir * String(a).localeCompare(String(b), undefined, { numeric: true });
}

export function createTrialsTable({ table, more, caption, trials, getExperiment, onHover }) {
  let sort = { key: 'index', dir: 1 };
  let limit = PAGE;
  let cols = [];
  let colsKey = '';

  function renderHead() {
    table.querySelector('thead')?.remove();
    const head = cols.map((c) => {
      const cls = [c.num ? 'num' : '', c.param ? 'param' : '', sort.key === c.key ? (sort.dir > 0 ? 'sorted asc' : 'sorted desc') : '']
        .filter(Boolean).join(' ');
      return `<th data-key="${esc(c.key)}" class="${cls}" title="${esc(c.title ?? `sort by ${c.label}`)}">${esc(c.label)}</th>`;
    }).join('');
    table.insertAdjacentHTML('afterbegin', `<thead><tr>${head}</tr></thead>`);
  }

  function rowHtml(t) {
    const failed = t.state === 'TRIAL_FAILED';
    const note = t.message || t.stopReason || t.infeasible || '';
    const cells = cols.map((c) => `<td class="${c.num ? 'num' : ''}">${c.show(t)}</td>`).join('');
    let html = `<tr data-id="${esc(t.id)}" class="${failed ? 'row-failed' : ''}"${note ? ` title="${esc(note)}"` : ''}>${cells}</tr>`;
    if (failed && t.message) {
      html += `<tr class="detail"><td></td><td colspan="${cols.length - 1}"><span class="reason">${esc(t.message)}</span></td></tr>`;
    }
    return html;
  }

  function update() {
    const exp = getExperiment();
    const next = columnsOf(exp, trials);
    const key = next.map((c) => c.key).join('\u0000');
    if (key !== colsKey || !table.querySelector('thead')) {
      cols = next;
      colsKey = key;
      if (!cols.some((c) => c.key === sort.key)) sort = { key: 'index', dir: 1 };
      renderHead();
    }
    const col = cols.find((c) => c.key === sort.key);
    // Sort on keys computed once per trial, the trial index breaking ties.
    const keyed = [...trials.values()].map((t) => [col.get(t), num(t.index), t]);
    keyed.sort((a, b) => compare(a[0], b[0], sort.dir) || a[1] - b[1]);
    const shown = keyed.slice(0, limit);
    let body = table.querySelector('tbody');
    if (!body) {
      body = document.createElement('tbody');
      table.appendChild(body);
    }
    body.innerHTML = shown.map((k) => rowHtml(k[2])).join('') ||
      `<tr class="empty-row"><td colspan="${cols.length}">no trials yet</td></tr>`;
    const rest = keyed.length - shown.length;
    more.hidden = rest <= 0;
    more.textContent = `show ${Math.min(PAGE, rest).toLocaleString('en-US')} more (${rest.toLocaleString('en-US')} not shown)`;
    caption.textContent = `${keyed.length.toLocaleString('en-US')} trials` +
      (rest > 0 ? `, first ${shown.length.toLocaleString('en-US')} shown` : '');
  }

  table.addEventListener('click', (ev) => {
    const th = ev.target.closest('th[data-key]');
    if (!th) return;
    const key = th.dataset.key;
    const col = cols.find((c) => c.key === key);
    if (sort.key === key) {
      sort = { key, dir: -sort.dir };
    } else {
      // Objective columns sort best first; others ascending.
      sort = { key, dir: col?.goal ? -1 : 1 };
    }
    renderHead();
    update();
  });

  more.addEventListener('click', () => {
    limit += PAGE;
    update();
  });

  // Hovering a trial emphasizes its curve.
  let hovered = '';
  table.addEventListener('mouseover', (ev) => {
    const id = ev.target.closest('tr[data-id]')?.dataset.id ?? '';
    if (id === hovered) return;
    if (hovered) onHover?.(hovered, false);
    hovered = id;
    if (id) onHover?.(id, true);
  });
  table.addEventListener('mouseleave', () => {
    if (hovered) onHover?.(hovered, false);
    hovered = '';
  });

  return { update };
}
