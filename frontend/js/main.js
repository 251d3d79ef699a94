// Chat page for the local agent server: native ES modules, no build step, no inline script (the
// page runs under a strict Content-Security-Policy). This module wires the views together.
//
//   session.js   the token: storage, refresh before expiry, expiry → login with the draft kept
//   api.js       the API client: JSON requests, OpenAI error bodies → sentences, downloads, uploads
//   sse.js       text/event-stream reader          markdown.js  Markdown + DOMPurify + highlight.js
//   messages.js  one message on screen (steps, sources, usage, copy)
//   chat.js      ask / stream / stop / regenerate / edit and resend
//   conversations.js  list, search, pagination, open, rename, delete, export
//   convsettings.js   per-conversation system prompt, temperature, model, mode
//   models.js    model and mode pickers           documents.js  upload (drop, progress), list, cited_in
//   account.js   keys, password, export/delete    admin.js      users, usage, disable, reset password
//   dom.js, banner.js, state.js   small helpers and the shared state
import { ApiError, api, friendlyError } from './api.js';
import { changePassword, createKey, deleteAccount, exportAccount, setAccountHooks, showAccount } from './account.js';
import { createUser, loadUsers, setAdminHooks } from './admin.js';
import { hideBanner, showBanner } from './banner.js';
import { cancelEdit, onComposerKey, onSend, onStop, updateLastActions } from './chat.js';
import {
  beginRename, endRename, exportConversation, loadConversations, onSearchInput, openConversation,
  setConversationHooks, startNewConversation, submitRename,
} from './conversations.js';
import { saveSettings } from './convsettings.js';
import { loadDocuments, onFilesChosen, onUpload, setDocumentHooks, setupDropZone } from './documents.js';
import { $, readPref, writePref } from './dom.js';
import { setupMarkdown, vendorsLoaded } from './markdown.js';
import { loadModels, rememberPickers } from './models.js';
import {
  API_BASE, EXPIRED_MSG, clearSession, isAdmin, isExpired, loadSession, saveDraft, saveSession, scheduleRefresh,
  session, setSessionHandlers, takeDraft,
} from './session.js';
import { state } from './state.js';

const VIEWS = { chat: 'app-view', account: 'account-view', admin: 'admin-view' };

function report(err) {
  if (err instanceof ApiError && err.status === 401) return; // handled by the session expiring
  showBanner(friendlyError(err), 'error');
}

// ------------------------------------------------------------------ views

function showView(name) {
  if (name === 'admin' && !isAdmin()) name = 'chat';
  Object.entries(VIEWS).forEach(([key, id]) => { $(id).hidden = key !== name; });
  ['chat', 'account', 'admin'].forEach((key) => {
    const nav = $('nav-' + key);
    if (key === name) nav.setAttribute('aria-current', 'page');
    else nav.removeAttribute('aria-current');
  });
  $('sidebar-toggle').hidden = name !== 'chat';
  $('chat-pickers').hidden = name !== 'chat';
  if (name === 'account') { showAccount(); $('account-heading').focus(); }
  if (name === 'admin') { loadUsers(); $('admin-heading').focus(); }
  if (name === 'chat') $('composer-input').focus();
}

function showLogin(message) {
  Object.values(VIEWS).forEach((id) => { $(id).hidden = true; });
  $('topbar-controls').hidden = true;
  $('sidebar-toggle').hidden = true;
  $('login-view').hidden = false;
  hideBanner();
  $('login-error').textContent = message || '';
  $('login-error').hidden = !message;
  $('login-password').value = '';
  $('login-username').focus();
}

function showApp() {
  $('login-view').hidden = true;
  $('topbar-controls').hidden = false;
  $('user-name').textContent = session.user && session.user.username ? session.user.username : '';
  $('nav-admin').hidden = !isAdmin();
  startNewConversation();
  showView('chat');
  loadModels(report);
  loadConversations(true);
  loadDocuments();
  const draft = takeDraft();
  if (draft) {
    $('composer-input').value = draft;
    showBanner('Your unsent message was kept \u2014 press Enter to send it.', 'info');
  }
  $('composer-input').focus();
}

function sessionExpired() {
  if (state.streaming) state.streaming.abort();
  const text = $('composer-input').value;
  if (text) saveDraft(text);
  showLogin(EXPIRED_MSG);
}

// ------------------------------------------------------------------ login / logout

async function onLogin(ev) {
  ev.preventDefault();
  const username = $('login-username').value.trim();
  const password = $('login-password').value;
  if (!username || !password) {
    $('login-error').textContent = 'Enter your username and password.';
    $('login-error').hidden = false;
    return;
  }
  $('login-submit').disabled = true;
  $('login-error').hidden = true;
  try {
    const body = await api('/api/auth/login', { method: 'POST', json: { username, password }, noAuthRedirect: true });
    if (!body || typeof body.access_token !== 'string') throw new ApiError(500, 'Unexpected login response.');
    saveSession(body.access_token, body.user || { username }, body.expires_in);
    showApp();
  } catch (err) {
    $('login-error').textContent = err instanceof ApiError && (err.status === 401 || err.status === 400)
      ? 'Wrong username or password.' : friendlyError(err);
    $('login-error').hidden = false;
  } finally {
    $('login-submit').disabled = false;
  }
}

function onLogout() {
  if (state.streaming) state.streaming.abort();
  const token = session.token;
  clearSession();
  saveDraft('');
  $('composer-input').value = '';
  showLogin();
  if (!token) return;
  // Best effort: revoke the token on the server; the page has already forgotten it.
  fetch(API_BASE + '/api/auth/logout', { method: 'POST', headers: { Authorization: 'Bearer ' + token } })
    .catch(() => { /* offline: the token expires on its own */ });
}

// ------------------------------------------------------------------ theme and layout

function currentTheme() {
  const set = document.documentElement.getAttribute('data-theme');
  if (set) return set;
  return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

function updateThemeButton() {
  const next = currentTheme() === 'dark' ? 'light' : 'dark';
  $('theme-toggle').setAttribute('aria-label', 'Switch to ' + next + ' theme');
  $('theme-toggle').title = 'Switch to ' + next + ' theme';
}

function toggleTheme() {
  const next = currentTheme() === 'dark' ? 'light' : 'dark';
  document.documentElement.setAttribute('data-theme', next);
  try { window.localStorage.setItem('theme', next); } catch (e) { /* ignore */ }
  updateThemeButton();
}

function toggleSidebar(force) {
  const open = typeof force === 'boolean' ? force : !document.body.classList.contains('sidebar-open');
  document.body.classList.toggle('sidebar-open', open);
  $('sidebar-toggle').setAttribute('aria-expanded', open ? 'true' : 'false');
}

function closeSidebarOnNarrow() {
  if (document.body.classList.contains('sidebar-open')) toggleSidebar(false);
}

// ------------------------------------------------------------------ conversation settings

async function onSaveSettings(ev) {
  ev.preventDefault();
  const status = $('set-status');
  try {
    await saveSettings();
    rememberPickers();
    status.textContent = 'Saved for this conversation.';
    status.className = 'form-status ok small';
    loadConversations(true);
  } catch (err) {
    status.textContent = err instanceof RangeError ? err.message : friendlyError(err);
    status.className = 'form-status form-error small';
  }
}

// The pickers belong to the open conversation once it is stored: a change is saved with it.
function onPickerChange() {
  rememberPickers();
  if (state.current && state.current.id) {
    saveSettings().catch(report);
  }
}

// ------------------------------------------------------------------ start

function on(id, event, fn) { $(id).addEventListener(event, fn); }

function init() {
  if (!vendorsLoaded()) {
    showBanner('The page did not load completely (missing vendor scripts). Reload to try again.', 'error');
    return;
  }
  setupMarkdown();
  const hooks = { report, closeSidebar: closeSidebarOnNarrow };
  setConversationHooks({ ...hooks, afterOpen: updateLastActions });
  setDocumentHooks({ ...hooks, openConversation: (id) => { showView('chat'); openConversation(id); } });
  setAccountHooks({ ...hooks, deleted: () => { clearSession(); showLogin('Your account and its data were deleted.'); } });
  setAdminHooks(hooks);
  setSessionHandlers({ expired: sessionExpired });

  on('login-form', 'submit', onLogin);
  on('logout-btn', 'click', onLogout);
  on('theme-toggle', 'click', toggleTheme);
  on('banner-close', 'click', hideBanner);
  on('sidebar-toggle', 'click', () => toggleSidebar());
  on('app-view', 'click', (ev) => {
    // A click on the dimmed area beside the open drawer closes it (narrow screens).
    if (document.body.classList.contains('sidebar-open') && !$('sidebar').contains(ev.target)) toggleSidebar(false);
  });
  on('nav-chat', 'click', () => showView('chat'));
  on('nav-account', 'click', () => showView('account'));
  on('nav-admin', 'click', () => showView('admin'));
  on('new-conv-btn', 'click', startNewConversation);
  on('conv-more', 'click', () => loadConversations(false));
  on('conv-search', 'input', onSearchInput);
  on('rename-btn', 'click', beginRename);
  on('rename-form', 'submit', submitRename);
  on('rename-cancel', 'click', endRename);
  on('rename-input', 'keydown', (ev) => { if (ev.key === 'Escape') { ev.stopPropagation(); endRename(); } });
  on('export-md-btn', 'click', () => exportConversation('md'));
  on('export-json-btn', 'click', () => exportConversation('json'));
  on('settings-form', 'submit', onSaveSettings);
  on('composer', 'submit', onSend);
  on('composer-input', 'keydown', onComposerKey);
  on('edit-cancel', 'click', cancelEdit);
  on('stop-btn', 'click', onStop);
  on('upload-input', 'change', onFilesChosen);
  on('upload-form', 'submit', onUpload);
  setupDropZone($('docs-panel'));
  on('model-select', 'change', onPickerChange);
  on('mode-select', 'change', onPickerChange);
  $('use-docs').checked = readPref('use_docs') === '1';
  on('use-docs', 'change', () => writePref('use_docs', $('use-docs').checked ? '1' : '0'));
  on('key-form', 'submit', createKey);
  on('pw-form', 'submit', changePassword);
  on('export-account-btn', 'click', exportAccount);
  on('delete-account-form', 'submit', deleteAccount);
  on('user-form', 'submit', createUser);
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && state.streaming) onStop();
    if (ev.key === 'Escape' && document.body.classList.contains('sidebar-open')) toggleSidebar(false);
  });
  // a tab that slept past its refresh time checks its token as soon as it is visible again
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible' || !session.token) return;
    if (isExpired()) { clearSession(); sessionExpired(); } else scheduleRefresh();
  });
  if (window.matchMedia) {
    const mq = window.matchMedia('(prefers-color-scheme: dark)');
    if (mq.addEventListener) mq.addEventListener('change', updateThemeButton);
  }
  updateThemeButton();

  if (loadSession() && !isExpired()) {
    scheduleRefresh();
    showApp();
  } else {
    const hadSession = !!session.token;
    clearSession();
    showLogin(hadSession ? EXPIRED_MSG : null);
  }
}

init();
