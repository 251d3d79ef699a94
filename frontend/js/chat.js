// Asking: stream an answer from /v1/chat/completions (steps, sources, usage as they arrive),
// stop it, regenerate the last answer, or edit and resend the last question.
import { ApiError, api, friendlyError, parseJsonResponse } from './api.js';
import { hideBanner, showBanner } from './banner.js';
import { $, button } from './dom.js';
import { historyOf, refreshAfterAnswer } from './conversations.js';
import { loadDocuments } from './documents.js';
import { readSettings } from './convsettings.js';
import {
  addMessageView, addStep, appendReasoning, scrollToBottom, setAgent, setBody, setSources, setUsage, showMessageError,
} from './messages.js';
import { currentModelId } from './models.js';
import { API_BASE, authHeaders, saveDraft, session } from './session.js';
import { readSse } from './sse.js';
import { state } from './state.js';

let editing = false;

function setStreaming(controller) {
  state.streaming = controller;
  $('send-btn').hidden = !!controller;
  $('stop-btn').hidden = !controller;
  $('composer-input').setAttribute('aria-busy', controller ? 'true' : 'false');
  if (!controller) $('composer-input').focus();
  updateLastActions();
}

function setEditing(on) {
  editing = on;
  $('edit-note').hidden = !on;
  $('send-btn').textContent = on ? 'Resend' : 'Send';
}

// The last user message gets "Edit", the last answer "Regenerate" (when nothing is streaming).
export function updateLastActions() {
  document.querySelectorAll('#messages .regen-btn, #messages .edit-btn').forEach((b) => b.remove());
  if (state.streaming) return;
  const users = document.querySelectorAll('#messages .msg-user');
  const answers = document.querySelectorAll('#messages .msg-assistant');
  const lastUser = users[users.length - 1];
  const lastAnswer = answers[answers.length - 1];
  if (lastUser) {
    lastUser.querySelector('.msg-actions').appendChild(
      button('Edit', 'btn btn-ghost btn-small edit-btn', () => beginEdit(lastUser), 'Edit and resend your last question'));
  }
  if (lastAnswer && lastUser && lastAnswer.compareDocumentPosition(lastUser) & Node.DOCUMENT_POSITION_PRECEDING) {
    lastAnswer.querySelector('.msg-actions').appendChild(
      button('Regenerate', 'btn btn-ghost btn-small regen-btn', regenerate, 'Regenerate the last answer'));
  }
}

function lastQuestionText() {
  const users = document.querySelectorAll('#messages .msg-user .msg-body');
  return users.length ? users[users.length - 1].textContent : '';
}

function beginEdit() {
  const input = $('composer-input');
  input.value = lastQuestionText();
  setEditing(true);
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

export function cancelEdit() {
  if (!editing) return;
  setEditing(false);
  $('composer-input').value = '';
}

// Removes the last question and its answer, on the server too when they were stored.
async function dropLastExchange() {
  const conv = state.current;
  const nodes = [...document.querySelectorAll('#messages .msg')];
  let i = nodes.length - 1;
  while (i >= 0 && !nodes[i].classList.contains('msg-user')) i--;
  if (i < 0) return;
  // the exchange on screen was stored only if it completed: then the screen and the history agree
  const shownQuestions = nodes.filter((n) => n.classList.contains('msg-user')).length;
  const storedQuestions = conv.messages.filter((m) => m.role === 'user').length;
  if (conv.id && storedQuestions > 0 && shownQuestions === storedQuestions) {
    const stored = await api('/api/conversations/' + encodeURIComponent(conv.id));
    const index = (stored.messages || []).map((m) => m.role).lastIndexOf('user');
    if (index !== -1) {
      const after = await api('/api/conversations/' + encodeURIComponent(conv.id) + '/messages/' + index, { method: 'DELETE' });
      conv.messages = historyOf((after && after.messages) || stored.messages.slice(0, index));
    }
  }
  nodes.slice(i).forEach((n) => n.remove());
  if (!document.querySelector('#messages .msg')) $('messages-empty').hidden = false;
}

async function regenerate() {
  if (state.streaming) return;
  const text = lastQuestionText();
  try {
    await dropLastExchange();
  } catch (err) {
    showBanner(friendlyError(err), 'error');
    return;
  }
  ask(text);
}

export async function onSend(ev) {
  if (ev) ev.preventDefault();
  if (state.streaming) return;
  const input = $('composer-input');
  const text = input.value;
  if (!text.trim()) return;
  if (!$('model-select').value) {
    showBanner('No model is available yet. Check that the server has loaded a model.', 'error');
    return;
  }
  if (editing) {
    setEditing(false);
    try {
      await dropLastExchange();
    } catch (err) {
      showBanner(friendlyError(err), 'error');
      return;
    }
  }
  input.value = '';
  ask(text);
}

export function onStop() {
  if (state.streaming) state.streaming.abort();
}

export function onComposerKey(ev) {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    onSend();
  } else if (ev.key === 'Escape' && editing) {
    cancelEdit();
  }
}

function requestBody(conv, history) {
  let settings = {};
  try { settings = readSettings(); } catch (e) { settings = {}; }
  const messages = settings.system_prompt ? [{ role: 'system', content: settings.system_prompt }] : [];
  const body = {
    model: currentModelId(),
    messages: messages.concat(history),
    stream: true,
    stream_options: { include_usage: true },
    // "new" asks the server to create the conversation (titled from the first message) and report
    // its id in the X-Conversation-Id header.
    conversation_id: conv.id || 'new',
  };
  if (typeof settings.temperature === 'number') body.temperature = settings.temperature;
  if ($('use-docs').checked) body.use_documents = true;
  return body;
}

function ask(text) {
  hideBanner();
  const conv = state.current;
  setBody(addMessageView('user'), text);
  const view = addMessageView('assistant');
  view.root.classList.add('streaming');
  view.root.setAttribute('aria-busy', 'true');
  scrollToBottom(true);

  const controller = new AbortController();
  setStreaming(controller);
  const started = performance.now();
  let answer = '';
  let usage = null;
  let model = null;
  let renderPending = false;
  let gotError = false;
  let completed = false;
  let unauthorized = false;

  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    window.requestAnimationFrame(() => {
      renderPending = false;
      setBody(view, answer);
      scrollToBottom(false);
    });
  }

  function handleChunk(data) {
    let chunk;
    try { chunk = JSON.parse(data); } catch (e) { return; }
    if (!chunk || typeof chunk !== 'object') return;
    if (chunk.error) {
      gotError = true;
      const e = chunk.error;
      showMessageError(view, 'The answer was interrupted: ' + (e.message || 'unknown error') + (e.code ? ' (' + e.code + ')' : ''));
      return;
    }
    if (chunk.agent) setAgent(view, chunk.agent);
    if (chunk.agent_step) addStep(view, chunk.agent_step);
    if (Array.isArray(chunk.sources)) setSources(view, chunk.sources);
    const choice = chunk.choices && chunk.choices[0];
    if (choice && choice.delta) {
      // reasoning_content repeats a structured agent_step as text; show it only when it comes alone.
      const reasoning = choice.delta.reasoning_content;
      if (typeof reasoning === 'string' && reasoning && !chunk.agent_step) appendReasoning(view, reasoning);
      if (typeof choice.delta.content === 'string' && choice.delta.content) {
        answer += choice.delta.content;
        scheduleRender();
      }
    }
    if (chunk.usage && typeof chunk.usage.total_tokens === 'number') {
      usage = chunk.usage;
      model = chunk.model || model;
      setUsage(view, usage, performance.now() - started, model);
    }
  }

  const history = conv.messages.concat([{ role: 'user', content: text }]);
  (async () => {
    try {
      const resp = await fetch(API_BASE + '/v1/chat/completions', {
        method: 'POST',
        headers: authHeaders({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
        body: JSON.stringify(requestBody(conv, history)),
        signal: controller.signal,
      });
      if (!resp.ok) {
        if (resp.status === 401) { unauthorized = true; saveDraft(text); }
        await parseJsonResponse(resp);
      }
      const convHeader = resp.headers.get('X-Conversation-Id');
      if (convHeader) conv.id = convHeader;
      if (!resp.body) throw new ApiError(500, 'The server sent no stream.');
      const sawDone = await readSse(resp.body, handleChunk);
      if (!sawDone && !gotError) showMessageError(view, 'The connection closed before the answer finished.');
      completed = sawDone && !gotError;
    } catch (err) {
      if (err && err.name === 'AbortError') {
        showMessageError(view, 'Stopped \u2014 generation was cancelled.');
        view.error.classList.add('msg-note');
      } else if (!(err instanceof ApiError && err.status === 401)) {
        showMessageError(view, friendlyError(err));
      }
    } finally {
      setBody(view, answer);
      if (usage) setUsage(view, usage, performance.now() - started, model);
      view.root.classList.remove('streaming');
      view.root.removeAttribute('aria-busy');
      // The server stores an exchange only when it completes, so only then does it join the history
      // sent with the next question.
      if (completed) conv.messages = history.concat([{ role: 'assistant', content: answer }]);
      if (state.streaming === controller) setStreaming(null);
      if (session.token && !unauthorized) {
        refreshAfterAnswer(conv);
        if (completed && $('use-docs').checked) loadDocuments(); // which conversations cite what
      }
      scrollToBottom(false);
    }
  })();
}
