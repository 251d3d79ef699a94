// The conversation list (paginated, searchable over titles and message text) and the open
// conversation's title actions: open, new, rename, delete, export.
import { api, download } from './api.js';
import { $, confirmButton, formatDate, make } from './dom.js';
import { showSettings } from './convsettings.js';
import { clearMessages, drawStoredMessage, scrollToBottom } from './messages.js';
import { state } from './state.js';

const CONV_PAGE = 20;
let hooks = { report: () => {}, afterOpen: () => {}, closeSidebar: () => {} };
let searchTimer = null;

export function setConversationHooks(h) { hooks = { ...hooks, ...h }; }

export async function loadConversations(reset) {
  if (reset) state.convOffset = 0;
  const offset = state.convOffset;
  const query = state.convQuery;
  const q = query ? '&q=' + encodeURIComponent(query) : '';
  try {
    const body = await api('/api/conversations?limit=' + CONV_PAGE + '&offset=' + offset + q);
    if (query !== state.convQuery) return; // a newer search replaced this one
    const items = body && Array.isArray(body.data) ? body.data : [];
    state.conversations = reset ? items : state.conversations.concat(items);
    state.convOffset = offset + items.length;
    $('conv-more').hidden = !(body && body.has_more);
    renderConversationList();
  } catch (err) {
    hooks.report(err);
  }
}

export function renderConversationList() {
  const list = $('conv-list');
  list.replaceChildren();
  $('conv-empty').hidden = state.conversations.length > 0;
  $('conv-empty').textContent = state.convQuery ? 'No conversation matches.' : 'No conversations yet.';
  state.conversations.forEach((conv) => {
    const li = make('li', 'item');
    const active = state.current && state.current.id === conv.id;
    if (active) li.classList.add('active');
    const open = make('button', 'item-main');
    open.type = 'button';
    const title = conv.title || 'Untitled conversation';
    open.appendChild(make('span', 'item-title', title));
    const count = typeof conv.message_count === 'number' ? conv.message_count + ' msg' : '';
    open.appendChild(make('span', 'item-sub', [count, formatDate(conv.updated_at)].filter(Boolean).join(' \u00b7 ')));
    if (conv.snippet) open.appendChild(make('span', 'item-snippet', conv.snippet));
    open.setAttribute('aria-label', 'Open conversation: ' + title);
    if (active) open.setAttribute('aria-current', 'true');
    open.addEventListener('click', () => openConversation(conv.id));
    li.appendChild(open);
    li.appendChild(confirmButton('\u2715', 'Delete conversation: ' + title, () => deleteConversation(conv.id)));
    list.appendChild(li);
  });
}

export function onSearchInput() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    state.convQuery = $('conv-search').value.trim();
    loadConversations(true);
  }, 250);
}

function showTitle() {
  const conv = state.current;
  $('chat-title').textContent = (conv && conv.title) || (conv && conv.id ? 'Untitled conversation' : 'New conversation');
  const stored = !!(conv && conv.id);
  $('rename-btn').disabled = !stored;
  $('export-md-btn').disabled = !stored;
  $('export-json-btn').disabled = !stored;
}

export function startNewConversation() {
  if (state.streaming) state.streaming.abort();
  state.current = { id: null, title: null, settings: {}, messages: [] };
  showTitle();
  showSettings({});
  clearMessages();
  renderConversationList();
  hooks.closeSidebar();
  hooks.afterOpen();
  $('composer-input').focus();
}

export function historyOf(messages) {
  return (messages || [])
    .filter((m) => m.role === 'user' || m.role === 'assistant')
    .map((m) => ({ role: m.role, content: typeof m.content === 'string' ? m.content : '' }));
}

export async function openConversation(id) {
  if (state.streaming) state.streaming.abort();
  try {
    const conv = await api('/api/conversations/' + encodeURIComponent(id));
    state.current = { id: conv.id, title: conv.title, settings: conv.settings || {}, messages: historyOf(conv.messages) };
    showTitle();
    showSettings(state.current.settings);
    clearMessages();
    (conv.messages || []).forEach((m) => {
      if (m.role === 'user' || m.role === 'assistant') drawStoredMessage(m);
    });
    renderConversationList();
    hooks.closeSidebar();
    hooks.afterOpen();
    scrollToBottom(true);
  } catch (err) {
    hooks.report(err);
  }
}

async function deleteConversation(id) {
  try {
    await api('/api/conversations/' + encodeURIComponent(id), { method: 'DELETE' });
    if (state.current && state.current.id === id) startNewConversation();
    await loadConversations(true);
  } catch (err) {
    hooks.report(err);
    renderConversationList();
  }
}

// After an answer: the list (the server titled a new conversation) and the heading.
export async function refreshAfterAnswer(conv) {
  await loadConversations(true);
  if (state.current !== conv || !conv.id) return;
  const match = state.conversations.find((c) => c.id === conv.id);
  if (match && match.title) conv.title = match.title;
  showTitle();
}

// ---- rename: the heading turns into a text field (Enter saves, Escape cancels)
export function beginRename() {
  const conv = state.current;
  if (!conv || !conv.id) return;
  const form = $('rename-form');
  $('rename-input').value = conv.title || '';
  $('chat-title').hidden = true;
  form.hidden = false;
  $('rename-input').focus();
  $('rename-input').select();
}

export function endRename() {
  $('rename-form').hidden = true;
  $('chat-title').hidden = false;
  $('rename-btn').focus();
}

export async function submitRename(ev) {
  ev.preventDefault();
  const conv = state.current;
  const title = $('rename-input').value.trim();
  if (!conv || !conv.id || !title) { endRename(); return; }
  try {
    const updated = await api('/api/conversations/' + encodeURIComponent(conv.id), { method: 'PATCH', json: { title } });
    conv.title = (updated && updated.title) || title;
    showTitle();
    endRename();
    await loadConversations(true);
  } catch (err) {
    hooks.report(err);
  }
}

export async function exportConversation(format) {
  const conv = state.current;
  if (!conv || !conv.id) return;
  try {
    await download('/api/conversations/' + encodeURIComponent(conv.id) + '/export?format=' + format,
      'conversation.' + (format === 'json' ? 'json' : 'md'));
  } catch (err) {
    hooks.report(err);
  }
}

export { showTitle };
