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
//   onOpen(reconnected)  the stream is open (again); after a reconnect, refetch what the
//                        stream does not replay (reports)
//   onError(ApiError)    a final error (401, 403, 404, ...): no more retries
//   onEnd()              the stream ended normally (the experiment ended)
// A stream that drops is opened again after 2 s, until close() is called.
export function watchExperiment(id, handlers) {
  const controller = new AbortController();
  let closed = false;
  let opened = 0;

  const sleep = (ms) => new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    controller.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });

  async function once() {
    let response;
    try {
      response = await post('WatchExperiment', { id }, controller.signal);
    } catch (e) {
      return { retry: true, error: e };
    }
    if (!response.ok) {
      const err = await errorOf(response);
      return { retry: !(err.status in { 400: 1, 401: 1, 403: 1, 404: 1 }), error: err };
    }
    handlers.onOpen?.(opened++ > 0);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
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
            if (code === 0) return { retry: false, ended: true };
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
          if (!closed) handlers.onEvent?.(message);
        }
      }
    } catch (e) {
      return { retry: true, error: e };
    } finally {
      reader.cancel().catch(() => {});
    }
    return { retry: true };  // the connection dropped without an end event
  }

  (async () => {
    while (!closed) {
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
      await sleep(2000);
    }
  })();

  return {
    close() {
      closed = true;
      controller.abort();
    },
  };
}
