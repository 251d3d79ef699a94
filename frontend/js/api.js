// The API client: JSON requests with the session's token, OpenAI-shaped errors turned into
// sentences a person can act on, downloads, and uploads with progress.
import { API_BASE, EXPIRED_MSG, authHeaders, expire, isExpired, session } from './session.js';
import { filenameFrom, saveBlob } from './dom.js';

export class ApiError extends Error {
  constructor(status, message, retryAfter, code) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.retryAfter = retryAfter;
    this.code = code;
  }
}

function retryAfterSeconds(value) {
  if (!value) return null;
  const n = parseInt(value, 10);
  if (!isNaN(n)) return n;
  const when = Date.parse(value);
  return isNaN(when) ? null : Math.max(0, Math.round((when - Date.now()) / 1000));
}

export function errorFromBody(status, body, retryAfterHeader) {
  let message = '';
  let code = null;
  if (body && typeof body === 'object') {
    if (body.error && typeof body.error === 'object') {
      message = body.error.message || '';
      code = body.error.code || null;
    } else if (typeof body.detail === 'string') {
      message = body.detail;
    }
  }
  return new ApiError(status, message, retryAfterSeconds(retryAfterHeader), code);
}

export function friendlyError(err) {
  if (err && err.name === 'AbortError') return 'Stopped.';
  if (!(err instanceof ApiError)) {
    return 'Cannot reach the server. Check that the backend is running and your network connection, then try again.';
  }
  const wait = err.retryAfter;
  switch (err.status) {
    case 401:
      return EXPIRED_MSG;
    case 403:
      return 'You are not allowed to do that.' + (err.message ? ' (' + err.message + ')' : '');
    case 404:
      return err.message || 'Not found \u2014 it may have been deleted.';
    case 413:
      return err.message || 'That is too large for the server to accept.';
    case 429:
      return 'Too many requests \u2014 please wait ' +
        (wait != null ? wait + ' second' + (wait === 1 ? '' : 's') : 'a moment') + ' and try again.';
    case 503:
      return 'The server is busy right now' +
        (wait != null ? ' \u2014 try again in ' + wait + ' s.' : ' \u2014 please try again shortly.');
    case 502:
    case 504:
      return 'The model backend is not responding. ' + (err.message || 'Please try again shortly.');
    default:
      if (err.status >= 500) return 'The server had a problem. ' + (err.message || 'Please try again.');
      return err.message || ('Request failed (HTTP ' + err.status + ').');
  }
}

function checkSession(options) {
  if (isExpired() && !options.noAuthRedirect) {
    expire();
    throw new ApiError(401, EXPIRED_MSG);
  }
}

export async function parseJsonResponse(resp, noAuthRedirect) {
  const text = await resp.text();
  let body = null;
  if (text) {
    try { body = JSON.parse(text); } catch (e) { body = null; }
  }
  if (!resp.ok) {
    const err = errorFromBody(resp.status, body, resp.headers.get('Retry-After'));
    if (resp.status === 401 && !noAuthRedirect && session.token) expire();
    throw err;
  }
  return body;
}

export async function api(path, options = {}) {
  checkSession(options);
  const headers = authHeaders({ Accept: 'application/json' });
  const init = { method: options.method || 'GET', headers, signal: options.signal };
  if (options.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.json);
  }
  const resp = await fetch(API_BASE + path, init);
  return parseJsonResponse(resp, options.noAuthRedirect);
}

// GETs a file (conversation or account export) and saves it under the server's filename.
export async function download(path, fallbackName) {
  checkSession({});
  const resp = await fetch(API_BASE + path, { headers: authHeaders() });
  if (!resp.ok) return parseJsonResponse(resp);
  const blob = await resp.blob();
  const name = filenameFrom(resp.headers.get('Content-Disposition'), fallbackName);
  saveBlob(blob, name);
  return name;
}

// POSTs a multipart form with upload progress (fetch has none); resolves with {status, body}.
export function uploadForm(path, form, onProgress) {
  checkSession({});
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', API_BASE + path);
    const headers = authHeaders({ Accept: 'application/json' });
    Object.keys(headers).forEach((k) => xhr.setRequestHeader(k, headers[k]));
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) { resolve({ status: xhr.status, body }); return; }
      if (xhr.status === 401) expire();
      reject(errorFromBody(xhr.status, body, xhr.getResponseHeader('Retry-After')));
    });
    xhr.addEventListener('error', () => reject(new TypeError('network')));
    xhr.addEventListener('abort', () => reject(new DOMException('Upload cancelled.', 'AbortError')));
    xhr.send(form);
  });
}
