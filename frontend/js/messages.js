// One message on screen: role, agent badge, steps as they arrive (incl. a program and its output),
// the answer body, sources, errors, token usage and time, and its action buttons.
import { copyButton, make } from './dom.js';
import { highlightCode, renderMarkdownInto } from './markdown.js';
import { $ } from './dom.js';

const MODE_LABEL = {
  chat: 'Chat', code: 'Code', react: 'ReAct', plan_execute: 'Plan & execute', 'plan-execute': 'Plan & execute', auto: 'Auto',
};
const STEP_KIND_LABEL = { plan: 'Plan', verify: 'Check', format: 'Format', note: 'Note' };

export function clearMessages() {
  $('messages').replaceChildren($('messages-empty'));
  $('messages-empty').hidden = false;
}

export function addMessageView(role) {
  $('messages-empty').hidden = true;
  const node = $('message-template').content.firstElementChild.cloneNode(true);
  node.classList.add(role === 'user' ? 'msg-user' : 'msg-assistant');
  node.querySelector('.msg-role').textContent = role === 'user' ? 'You' : 'Assistant';
  $('messages').appendChild(node);
  const view = {
    role,
    root: node,
    body: node.querySelector('.msg-body'),
    agent: node.querySelector('.msg-agent'),
    steps: node.querySelector('.msg-steps'),
    stepsSummary: node.querySelector('.msg-steps summary'),
    stepsList: node.querySelector('.steps-list'),
    reasoning: node.querySelector('.msg-reasoning'),
    sources: node.querySelector('.msg-sources'),
    sourcesList: node.querySelector('.sources-list'),
    error: node.querySelector('.msg-error'),
    usage: node.querySelector('.msg-usage'),
    actions: node.querySelector('.msg-actions'),
    text: '',
    stepCount: 0,
  };
  view.actions.appendChild(copyButton(() => view.text, role === 'user' ? 'Copy question' : 'Copy answer'));
  return view;
}

export function setBody(view, text) {
  view.text = text || '';
  if (view.role === 'user') view.body.textContent = view.text;
  else renderMarkdownInto(view.body, view.text);
}

export function setAgent(view, agent) {
  if (!agent || !agent.mode) return;
  const label = MODE_LABEL[agent.mode] || String(agent.mode);
  view.agent.textContent = label;
  const on = agent.model ? ' on ' + agent.model : '';
  view.agent.title = (agent.reason ? 'Why: ' + agent.reason : '') + (on ? (agent.reason ? '\n' : '') + 'Steps ran' + on : '');
  view.agent.setAttribute('aria-label', 'Answered in ' + label + ' mode' + on + (agent.reason ? ': ' + agent.reason : ''));
}

function updateStepsSummary(view) {
  view.steps.hidden = false;
  view.stepsSummary.textContent = view.stepCount ? 'Steps (' + view.stepCount + ')' : 'Steps';
}

function labelled(label, node) {
  const wrap = make('div', 'step-field');
  wrap.appendChild(make('span', 'step-label', label + ':'));
  wrap.appendChild(node);
  return wrap;
}

function preBlock(className, text, language) {
  const pre = make('pre', className);
  const code = make('code', null, text);
  pre.appendChild(code);
  if (language) highlightCode(code, language);
  return pre;
}

export function addStep(view, step) {
  if (!step || typeof step !== 'object') return;
  const li = make('li', 'step');
  if (step.ok === false) li.classList.add('step-failed');
  if (!step.tool && step.kind && STEP_KIND_LABEL[step.kind]) {
    li.appendChild(make('span', 'step-kind', STEP_KIND_LABEL[step.kind]));
  }
  if (step.thought) li.appendChild(labelled('Thought', make('p', 'step-thought', step.thought)));
  if (step.tool) li.appendChild(labelled('Tool', make('code', 'step-tool', step.tool)));
  // a program run (code mode, or a chat reply's program checked in the sandbox): program and its output
  const program = step.tool === 'python_code' && typeof step.input === 'string';
  if (step.input !== undefined && step.input !== null && step.input !== '') {
    const input = typeof step.input === 'string' ? step.input : JSON.stringify(step.input, null, 2);
    li.appendChild(labelled(program ? 'Program' : 'Input', preBlock('step-input', input, program ? 'python' : '')));
  }
  if (step.observation !== undefined && step.observation !== null && step.observation !== '') {
    const obs = typeof step.observation === 'string' ? step.observation : JSON.stringify(step.observation, null, 2);
    li.appendChild(labelled(program ? 'Output' : 'Observation', make('pre', 'step-observation', obs)));
  }
  view.stepsList.appendChild(li);
  view.stepCount += 1;
  updateStepsSummary(view);
}

export function appendReasoning(view, text) {
  view.reasoning.hidden = false;
  view.reasoning.textContent += text;
  updateStepsSummary(view);
}

export function setSources(view, sources) {
  view.sourcesList.replaceChildren();
  sources.forEach((src, i) => {
    const li = make('li', 'source');
    const index = src.index != null ? src.index : i + 1;
    li.appendChild(make('span', 'source-head', '[' + index + '] ' + (src.filename || 'document')));
    const meta = [];
    if (src.page != null) meta.push('page ' + src.page);
    if (typeof src.score === 'number') meta.push('score ' + src.score.toFixed(2));
    if (meta.length) li.appendChild(make('span', 'source-meta', ' \u2014 ' + meta.join(', ')));
    if (src.text) {
      const det = make('details', 'source-text');
      det.appendChild(make('summary', null, 'Excerpt'));
      det.appendChild(make('p', null, src.text));
      li.appendChild(det);
    }
    view.sourcesList.appendChild(li);
  });
  view.sources.hidden = sources.length === 0;
}

// "12 prompt + 34 completion tokens · 1.8 s · model"
export function setUsage(view, usage, elapsedMs, model) {
  const parts = [];
  if (usage && typeof usage.total_tokens === 'number') {
    parts.push(usage.prompt_tokens + ' prompt + ' + usage.completion_tokens + ' completion tokens');
  }
  if (typeof elapsedMs === 'number' && elapsedMs >= 0) parts.push((elapsedMs / 1000).toFixed(1) + ' s');
  if (model) parts.push(model);
  view.usage.textContent = parts.join(' \u00b7 ');
  view.usage.hidden = parts.length === 0;
}

export function showMessageError(view, text) {
  view.error.textContent = text;
  view.error.hidden = false;
}

export function scrollToBottom(force) {
  const m = $('messages');
  const nearBottom = m.scrollHeight - m.scrollTop - m.clientHeight < 120;
  if (force || nearBottom) m.scrollTop = m.scrollHeight;
}

// A stored assistant message (from GET /api/conversations/{id}) drawn as it was streamed.
export function drawStoredMessage(m) {
  const view = addMessageView(m.role);
  setBody(view, typeof m.content === 'string' ? m.content : '');
  if (m.role === 'assistant') {
    if (m.agent) setAgent(view, m.agent);
    (m.steps || (m.agent && m.agent.steps) || []).forEach((step) => addStep(view, step));
    if (Array.isArray(m.sources) && m.sources.length) setSources(view, m.sources);
    const meta = m.meta || {};
    setUsage(view, meta.usage, meta.elapsed_ms, meta.model);
  }
  return view;
}
