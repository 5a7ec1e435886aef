// The shell: hash router, top bar, error banner and the sign-in form.
//
// Each view module exports mount(root, params, ctx) and returns a cleanup function. The
// router calls the cleanup (which stops polling and watch streams) and disposes every
// ECharts instance under #view before it mounts the next view.

import { ApiError, clearToken, getToken, setToken } from './api.js';
import { esc } from './format.js';
import * as experimentsView from './experiments.js';
import * as experimentView from './experiment.js';
import * as trialView from './trial.js';
import * as workersView from './workers.js';

const viewEl = document.getElementById('view');
const errorEl = document.getElementById('error');
const signOutEl = document.getElementById('sign-out');
const liveEl = document.getElementById('live');

const routes = [
  { re: /^#?\/?$/, view: experimentsView, nav: 'nav-experiments' },
  { re: /^#\/experiments\/([^/?]+)\/?$/, view: experimentView, nav: 'nav-experiments' },
  { re: /^#\/trials\/([^/?]+)\/?$/, view: trialView, nav: 'nav-experiments' },
  { re: /^#\/workers\/?$/, view: workersView, nav: 'nav-workers' },
];

let current = null;  // { ctx, cleanup } of the mounted view

function showError(message) {
  errorEl.textContent = message;
  errorEl.hidden = false;
}

function hideError() {
  errorEl.hidden = true;
  errorEl.textContent = '';
}

function setLive(text) {
  liveEl.textContent = text || '';
  liveEl.hidden = !text;
}

// Every chart under `root`, found the way ECharts marks its containers.
function chartsIn(root) {
  const echarts = globalThis.echarts;
  if (!echarts) return [];
  return [...root.querySelectorAll('[_echarts_instance_]')]
    .map((el) => echarts.getInstanceByDom(el))
    .filter(Boolean);
}

function unmount() {
  if (!current) return;
  current.ctx.active = false;
  try {
    current.cleanup?.();
  } catch (e) {
    console.error(e);
  }
  for (const chart of chartsIn(viewEl)) chart.dispose();
  current = null;
  setLive('');
}

// What a view gets: a way to report errors (401 turns into the sign-in form) and to tell
// whether it is still the mounted view (late answers are dropped when not).
function makeCtx() {
  const ctx = {
    active: true,
    fail(err) {
      if (!ctx.active || err?.name === 'AbortError') return;
      if (err instanceof ApiError && err.unauthenticated) {
        showSignIn(err);
        return;
      }
      showError(err?.message ?? String(err));
    },
    error(message) {
      if (ctx.active) showError(message);
    },
    clearError() {
      if (ctx.active) hideError();
    },
    live(text) {
      if (ctx.active) setLive(text);
    },
    title(text) {
      if (ctx.active) document.title = text ? `${text} · rung` : 'rung';
    },
  };
  return ctx;
}

function route() {
  unmount();
  hideError();
  signOutEl.hidden = !getToken();
  document.title = 'rung';
  const hash = location.hash || '#/';
  const match = routes.map((r) => ({ r, m: hash.match(r.re) })).find((x) => x.m);
  for (const a of document.querySelectorAll('.topbar nav a')) {
    a.classList.toggle('active', a.id === match?.r.nav);
  }
  viewEl.innerHTML = '';
  const ctx = makeCtx();
  if (!match) {
    viewEl.innerHTML = `<p class="empty">No page at ${esc(hash)}. <a href="#/">Experiments</a></p>`;
    return;
  }
  const params = match.m.slice(1).map((p) => decodeURIComponent(p));
  try {
    current = { ctx, cleanup: null };
    current.cleanup = match.r.view.mount(viewEl, params, ctx);
  } catch (e) {
    ctx.fail(e);
  }
}

// The sign-in form: shown instead of the view when a call answers 401. With a token already
// set, the token was refused: say why (the server's message).
function showSignIn(err) {
  const hadToken = Boolean(getToken());
  unmount();
  hideError();
  signOutEl.hidden = !hadToken;
  viewEl.innerHTML = `
    <section class="signin">
      <h1>Sign in</h1>
      <p>rungd was started with <code>--auth-tokens</code>: paste your token.</p>
      <form id="token-form">
        <input id="token" type="password" autocomplete="current-password" placeholder="token" required>
        <button type="submit">Sign in</button>
      </form>
      <p id="token-error" class="error-text" ${hadToken ? '' : 'hidden'}>${
        hadToken ? esc(err?.message || 'the token was refused') : ''}</p>
    </section>`;
  const form = document.getElementById('token-form');
  const input = document.getElementById('token');
  input.focus();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    setToken(token);
    route();  // retry the page with the token
  });
}

signOutEl.addEventListener('click', () => {
  clearToken();
  route();
});

window.addEventListener('hashchange', route);

// Charts follow the window's size (one resize per frame).
let resizeQueued = false;
window.addEventListener('resize', () => {
  if (resizeQueued) return;
  resizeQueued = true;
  requestAnimationFrame(() => {
    resizeQueued = false;
    for (const chart of chartsIn(viewEl)) chart.resize();
  });
});

if (!globalThis.echarts) {
  showError('The charting library (/assets/echarts.min.js) did not load; charts are off.');
}
route();
