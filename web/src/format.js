// Formatting helpers shared by every view: HTML escaping, numbers (printf's %g), times,
// state words and badges, parameter values, objectives.

// Escapes a value for use in HTML text and in double-quoted attributes.
export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

// int64 fields arrive as JSON strings ("1764770000000"); absent ones as undefined.
export function num(v) {
  const n = Number(v ?? 0);
  return Number.isFinite(n) ? n : 0;
}

// C's printf("%.<prec>g"), so that figures match the `rung` CLI (Num is %.6g there).
export function fmtG(v, prec = 6) {
  if (v === null || v === undefined || v === '') return '-';
  v = Number(v);
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  if (v === 0) return '0';
  const [mant, expStr] = v.toExponential(prec - 1).split('e');
  const exp = Number(expStr);
  const trim = (s) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (exp < -4 || exp >= prec) {
    const e = Math.abs(exp);
    return `${trim(mant)}e${exp < 0 ? '-' : '+'}${e < 10 ? '0' : ''}${e}`;
  }
  return trim(v.toFixed(Math.max(0, prec - 1 - exp)));
}

// printf("%+.<prec>g").
export function fmtSigned(v, prec) {
  const s = fmtG(v, prec);
  return Number(v) >= 0 && !s.startsWith('+') ? `+${s}` : s;
}

// The page's default: 4 significant digits.
export function fmtNum(v) {
  return fmtG(v, 4);
}

// 200000 -> "200,000".
export function fmtInt(v) {
  return num(v).toLocaleString('en-US');
}

// "12 s ago", "3 min ago", "2 h ago", "4 d ago"; "-" for 0 (unset).
export function ago(unixMs, now = Date.now()) {
  const t = num(unixMs);
  if (!t) return '-';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// A duration in ms: "850 ms", "42 s", "3 min 5 s", "2 h 10 min".
export function duration(ms) {
  ms = Math.max(0, num(ms));
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

// Local date and time, "2025-12-03 14:05:09"; "-" for 0.
export function fmtTime(unixMs) {
  const t = num(unixMs);
  if (!t) return '-';
  const d = new Date(t);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// "EXPERIMENT_RUNNING" -> "running", "TRIAL_COMPLETED" -> "completed",
// "WORKER_CONNECTED" -> "connected".
export function stateWord(state) {
  if (!state) return 'unknown';
  const w = String(state).replace(/^(EXPERIMENT|TRIAL|WORKER)_/, '').toLowerCase();
  return w === 'state_unspecified' ? 'unknown' : w;
}

// A coloured badge for any state enum (colours in style.css, .st-<word>).
export function badge(state) {
  const w = stateWord(state);
  return `<span class="badge st-${esc(w)}">${esc(w)}</span>`;
}

// ParamValue JSON -> a number or a string (undefined when absent).
export function paramValue(pv) {
  if (!pv) return undefined;
  if ('floatValue' in pv) return Number(pv.floatValue);
  if ('intValue' in pv) return Number(pv.intValue);
  if ('categoricalValue' in pv) return pv.categoricalValue;
  return undefined;
}

export function fmtParam(pv) {
  const v = paramValue(pv);
  if (v === undefined) return '';
  return typeof v === 'number' ? ('intValue' in pv ? String(v) : fmtNum(v)) : v;
}

// The experiment's objectives, [{metric, maximize}], the first one first.
export function objectives(spec) {
  const list = spec?.objectives?.length ? spec.objectives : [spec?.objective ?? {}];
  return list.map((o) => ({ metric: o.metric ?? '', maximize: o.goal === 'MAXIMIZE' }));
}

// Compares two objective values so that the better one sorts first; missing ones last.
export function betterFirst(maximize) {
  return (a, b) => {
    const am = a === undefined || a === null || Number.isNaN(a);
    const bm = b === undefined || b === null || Number.isNaN(b);
    if (am || bm) return am - bm;
    return maximize ? b - a : a - b;
  };
}

// The value a trial is ranked by: its result when it has one, else the best value reported.
export function trialScore(t) {
  if (t.hasResult) return Number(t.result);
  if (t.hasBestValue) return Number(t.bestValue);
  return undefined;
}

// Who ran a trial: an ask-and-tell client, several workers (ranks) or one worker.
export function runBy(t) {
  if (t.clientId) return `client:${t.clientId}`;
  if (t.placements?.length > 1) return t.placements.map((p) => p.workerId).join('+');
  return t.workerId || '';
}
