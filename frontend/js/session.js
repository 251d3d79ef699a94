// The login session: the token, its expiry, refreshing it before it runs out, and what happens
// when it is gone (back to the login form, with the message being typed kept as a draft).
//
// The token lives in sessionStorage, not localStorage: it survives a reload of this tab but is not
// shared with other tabs and is discarded when the tab closes, which keeps the window in which a
// leaked token is useful short. It is still readable by scripts on this origin, so the strict CSP
// and the sanitising are the real XSS defence. An httpOnly cookie would need CSRF protection and
// cookie auth on an API that is bearer-token based for OpenAI SDK clients.

export const API_BASE = String((window.APP_CONFIG || {}).apiBase || '').replace(/\/+$/, '');
export const EXPIRED_MSG = 'Your session expired \u2014 please log in again.';
const TOKEN_KEY = 'agent_chat_token';
const DRAFT_KEY = 'agent_chat_draft';
// refresh when this share of the token's life is left (at least 5 s before expiry)
const REFRESH_AT_LEFT = 0.2;

export const session = { token: null, user: null, expiresAt: 0, lifetimeS: 0 };
let refreshTimer = null;
let onExpired = () => {};
let onRefreshed = () => {};

export function setSessionHandlers(handlers) {
  onExpired = handlers.expired || onExpired;
  onRefreshed = handlers.refreshed || onRefreshed;
}

export function saveSession(token, user, expiresIn) {
  session.token = token;
  session.user = user;
  session.lifetimeS = expiresIn || 0;
  session.expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : 0;
  try {
    window.sessionStorage.setItem(TOKEN_KEY, JSON.stringify({
      token, user, expiresAt: session.expiresAt, lifetimeS: session.lifetimeS,
    }));
  } catch (e) { /* private mode: keep it in memory only */ }
  scheduleRefresh();
}

export function loadSession() {
  try {
    const saved = JSON.parse(window.sessionStorage.getItem(TOKEN_KEY) || 'null');
    if (!saved || typeof saved.token !== 'string') return false;
    Object.assign(session, {
      token: saved.token, user: saved.user || null, expiresAt: saved.expiresAt || 0, lifetimeS: saved.lifetimeS || 0,
    });
    return true;
  } catch (e) {
    return false;
  }
}

export function clearSession() {
  Object.assign(session, { token: null, user: null, expiresAt: 0, lifetimeS: 0 });
  clearTimeout(refreshTimer);
  refreshTimer = null;
  try { window.sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
}

export function isExpired() {
  return !!(session.token && session.expiresAt && Date.now() >= session.expiresAt);
}

export function isAdmin() {
  return !!(session.user && session.user.role === 'admin');
}

export function authHeaders(extra) {
  const headers = extra || {};
  if (session.token) headers.Authorization = 'Bearer ' + session.token;
  return headers;
}

export function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = null;
  if (!session.token || !session.expiresAt) return;
  const lifetimeMs = (session.lifetimeS || 60) * 1000;
  const lead = Math.max(5000, lifetimeMs * REFRESH_AT_LEFT);
  const wait = Math.max(0, session.expiresAt - Date.now() - lead);
  refreshTimer = setTimeout(refreshNow, wait);
}

// Exchanges the token for a fresh one (the server revokes the old one).
export async function refreshNow() {
  if (!session.token) return false;
  if (isExpired()) { expire(); return false; }
  let resp;
  try {
    resp = await fetch(API_BASE + '/api/auth/refresh', { method: 'POST', headers: authHeaders({ Accept: 'application/json' }) });
  } catch (e) {
    // offline for a moment: try again shortly, while the token is still valid
    refreshTimer = setTimeout(refreshNow, 5000);
    return false;
  }
  if (resp.status === 401) { expire(); return false; }
  if (!resp.ok) { refreshTimer = setTimeout(refreshNow, 5000); return false; }
  const body = await resp.json();
  saveSession(body.access_token, body.user || session.user, body.expires_in);
  onRefreshed();
  return true;
}

export function expire() {
  clearSession();
  onExpired();
}

export function saveDraft(text) {
  try {
    if (text) window.sessionStorage.setItem(DRAFT_KEY, text);
    else window.sessionStorage.removeItem(DRAFT_KEY);
  } catch (e) { /* ignore */ }
}

export function takeDraft() {
  try {
    const text = window.sessionStorage.getItem(DRAFT_KEY);
    window.sessionStorage.removeItem(DRAFT_KEY);
    return text || '';
  } catch (e) {
    return '';
  }
}
