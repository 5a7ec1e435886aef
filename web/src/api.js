// The JSON bridge to rungd's ExperimentService: unary calls and the WatchExperiment stream.
// Requests and responses use protobuf's JSON mapping (lowerCamelCase names, int64 as strings).

const BASE = '/api/rung.v1.ExperimentService/';
const TOKEN_KEY = 'rung-token';

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// A failed call: `status` is the HTTP status (401, 403, 404, ...), `code` the gRPC code
// number and `grpcStatus` its name, when the server said; 0 / '' for a network failure.
export class ApiError extends Error {
  constructor(status, message, code = 0, grpcStatus = '') {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.grpcStatus = grpcStatus;
  }
  get unauthenticated() {
    return this.status === 401 || this.code === 16;
  }
}

// gRPC codes that a watch must not retry (the answer will not change by asking again).
const FINAL_CODES = new Set([3, 5, 7, 16]);  // INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED
const HTTP_OF_CODE = { 3: 400, 5: 404, 7: 403, 16: 401 };

function headers() {
  const h = { 'Content-Type': 'application/json' };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

async function errorOf(response) {
  let body = null;
  try {
    body = JSON.parse(await response.text());
  } catch {
    // not JSON (a proxy's page, say): the HTTP status says it
  }
  const message = body?.message || response.statusText || `HTTP ${response.status}`;
  return new ApiError(response.status, message, body?.code ?? 0, body?.status ?? '');
}

function post(method, body, signal) {
  return fetch(BASE + method, {
    method: 'POST',
    headers: headers(),
    body: JSON.stringify(body ?? {}),
    signal,
  });
}

// One unary call; resolves to the response message, or throws an ApiError.
export async function call(method, body = {}, signal) {
  let response;
  try {
    response = await post(method, body, signal);
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    throw new ApiError(0, `rungd is unreachable (${e?.message ?? e})`);
  }
  if (!response.ok) throw await errorOf(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

// The calls the page makes.
export const api = {
  listExperiments: () => call('ListExperiments', {}),
  getExperiment: (id) => call('GetExperiment', { id }),
  listTrials: (experimentId) => call('ListTrials', { experimentId }),
  getTrial: (id) => call('GetTrial', { id }),
  getTrialMetrics: (trialId) => call('GetTrialMetrics', { trialId }),
  getTrialLogs: (trialId, tailLines = 200) => call('GetTrialLogs', { trialId, tailLines }),
  getAblation: (experimentId) => call('GetAblation', { experimentId }),
  getBestTrials: (experimentId, count) => call('GetBestTrials', { experimentId, count }),
  getCurves: (experimentId, metric = '', maxPoints = 200000) =>
    call('GetCurves', { experimentId, metric, maxPoints }),
  listWorkers: () => call('ListWorkers', {}),
};

// Splits a server-sent-events text into complete blocks; returns [blocks, rest].
function splitBlocks(buffer) {
  const parts = buffer.split(/\r?\n\r?\n/);
  const rest = parts.pop();
  return [parts, rest];
}

// One SSE block -> {event, data} (data lines joined by "\n"); comments are dropped.
function parseBlock(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return { event, data: data.join('\n') };
}

// Watches an experiment: WatchExperiment read with fetch() (EventSource cannot send the
// Authorization header). Handlers:
//   onEvent(WatchEvent)  each event: {experiment}, {trial} or {report}
//   onOpen(reconnected)  the stream's first event has come: rungd now sends every change, so
//                        what is fetched from now on misses nothing; after a reconnect,
//                        refetch what the stream does not replay (reports)
//   onError(ApiError)    a final error (401, 403, 404, ...): no more retries
//   onEnd()              the stream ended with the experiment
// A stream that drops (rungd restarting, the network) is opened again after 2 s, until
// close() is called. While the tab is hidden it is closed, and opened again when the tab is
// shown: a browser allows only a few connections to one server, and a page that nobody looks
// at should not hold one.
const TERMINAL = new Set(['EXPERIMENT_COMPLETED', 'EXPERIMENT_CANCELLED', 'EXPERIMENT_FAILED']);

export function watchExperiment(id, handlers) {
  const controller = new AbortController();
  let closed = false;
  let opened = 0;
  let connection = null;  // the current fetch's AbortController
  let state = '';         // the experiment's state in its latest event

  const onAbort = (fn) => controller.signal.addEventListener('abort', fn, { once: true });
  const sleep = (ms) => new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      controller.signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    onAbort(done);
  });
  const visible = () => new Promise((resolve) => {
    const check = () => {
      if (document.hidden && !closed) return;
      document.removeEventListener('visibilitychange', check);
      controller.signal.removeEventListener('abort', check);
      resolve();
    };
    document.addEventListener('visibilitychange', check);
    onAbort(check);
    check();
  });
  const hide = () => { if (document.hidden) connection?.abort(); };
  document.addEventListener('visibilitychange', hide);

  async function once() {
    connection = new AbortController();
    const stop = () => connection.abort();
    onAbort(stop);
    let reader = null;
    try {
      const response = await post('WatchExperiment', { id }, connection.signal);
      if (!response.ok) {
        const err = await errorOf(response);
        return { retry: !(err.status in { 400: 1, 401: 1, 403: 1, 404: 1 }), error: err };
      }
      reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      let first = true;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const [blocks, rest] = splitBlocks(buffer);
        buffer = rest;
        for (const block of blocks) {
          const { event, data } = parseBlock(block);
          if (event === 'end') {
            let end = {};
            try { end = JSON.parse(data || '{}'); } catch { /* keep {} */ }
            const code = Number(end.code ?? 0);
            // rungd also ends every watch when it stops: only an ended experiment is the end.
            if (code === 0) return TERMINAL.has(state) ? { retry: false, ended: true } : { retry: true };
            const err = new ApiError(HTTP_OF_CODE[code] ?? 500, end.message || `watch ended (code ${code})`, code);
            return { retry: !FINAL_CODES.has(code), error: err };
          }
          if (!data) continue;
          let message;
          try {
            message = JSON.parse(data);
          } catch {
            continue;  // a malformed event: skip it rather than lose the stream
          }
          if (message.experiment?.state) state = message.experiment.state;
          if (first && !closed) {
            first = false;
            handlers.onOpen?.(opened++ > 0);
          }
          if (!closed) handlers.onEvent?.(message);
        }
      }
    } catch (e) {
      return { retry: true, error: e };
    } finally {
      controller.signal.removeEventListener('abort', stop);
      reader?.cancel().catch(() => {});
    }
    return { retry: true };  // the connection dropped without an end event
  }

  (async () => {
    while (!closed) {
      await visible();
      if (closed) return;
      const r = await once();
      if (closed) return;
      if (r.ended) {
        handlers.onEnd?.();
        return;
      }
      if (!r.retry) {
        handlers.onError?.(r.error);
        return;
      }
      handlers.onDrop?.(r.error);
      if (!document.hidden) await sleep(2000);
    }
  })();

  return {
    close() {
      closed = true;
      document.removeEventListener('visibilitychange', hide);
      controller.abort();
    },
  };
}
