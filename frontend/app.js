// Chat page for the local agent server. Plain browser JavaScript, no build step.
//
// Safety rules followed throughout this file:
//  * user- or model-supplied text (titles, filenames, messages, tool observations) is put into the
//    page with textContent, or - for assistant Markdown only - rendered by markdown-it with raw HTML
//    disabled and then sanitised by DOMPurify before it touches the DOM;
//  * no inline scripts or handlers, so the page works under a strict Content-Security-Policy.
(function () {
  'use strict';

  var CONFIG = window.APP_CONFIG || {};
  var API_BASE = String(CONFIG.apiBase || '').replace(/\/+$/, '');
  var TOKEN_KEY = 'agent_chat_token';
  var MODE_SUFFIX = { auto: '', chat: ':chat', code: ':code', react: ':react', 'plan-execute': ':plan-execute' };
  var MODE_LABEL = {
    chat: 'Chat', code: 'Code', react: 'ReAct', plan_execute: 'Plan & execute', 'plan-execute': 'Plan & execute', auto: 'Auto',
  };
  var STEP_KIND_LABEL = { plan: 'Plan', verify: 'Check', format: 'Format', note: 'Note' };
  var KNOWN_SUFFIXES = [':chat', ':code', ':react', ':plan-execute'];
  var CONV_PAGE = 50;
  var EXPIRED_MSG = 'Your session expired \u2014 please log in again.';

  var $ = function (id) { return document.getElementById(id); };
  var el = {};

  var state = {
    token: null,
    user: null,
    expiresAt: 0,
    conversations: [],
    convOffset: 0,
    current: null, // {id, title, messages: [{role, content}]}
    streaming: null, // AbortController of the running generation
    pendingFiles: [],
  };

  // ------------------------------------------------------------------ errors

  function ApiError(status, message, retryAfter, code) {
    this.name = 'ApiError';
    this.status = status;
    this.message = message;
    this.retryAfter = retryAfter;
    this.code = code;
  }
  ApiError.prototype = Object.create(Error.prototype);

  function retryAfterSeconds(value) {
    if (!value) return null;
    var n = parseInt(value, 10);
    if (!isNaN(n)) return n;
    var when = Date.parse(value);
    return isNaN(when) ? null : Math.max(0, Math.round((when - Date.now()) / 1000));
  }

  function errorFromBody(status, body, retryAfterHeader) {
    var message = '';
    var code = null;
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

  // Turns any failure into a sentence a person can act on.
  function friendlyError(err) {
    if (err && err.name === 'AbortError') return 'Stopped.';
    if (!(err instanceof ApiError)) {
      return 'Cannot reach the server. Check that the backend is running and your network connection, then try again.';
    }
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
          (err.retryAfter != null ? err.retryAfter + ' second' + (err.retryAfter === 1 ? '' : 's') : 'a moment') +
          ' and try again.';
      case 503:
        return 'The server is busy right now' +
          (err.retryAfter != null ? ' \u2014 try again in ' + err.retryAfter + ' s.' : ' \u2014 please try again shortly.');
      case 502:
      case 504:
        return 'The model backend is not responding. ' + (err.message || 'Please try again shortly.');
      default:
        if (err.status >= 500) return 'The server had a problem. ' + (err.message || 'Please try again.');
        return err.message || ('Request failed (HTTP ' + err.status + ').');
    }
  }

  function showBanner(text, kind) {
    el.bannerText.textContent = text;
    el.banner.className = 'banner' + (kind ? ' banner-' + kind : '');
    el.banner.hidden = false;
  }

  function hideBanner() {
    el.banner.hidden = true;
  }

  function report(err) {
    if (err instanceof ApiError && err.status === 401) return; // handled by sessionExpired()
    showBanner(friendlyError(err), 'error');
  }

  // ------------------------------------------------------------------ auth token

  // The token lives in sessionStorage, not localStorage: it survives a reload of this tab but is
  // not shared with other tabs and is discarded when the tab closes, which keeps the window in
  // which a leaked token is useful short. It is still readable by scripts on this origin, so the
  // strict CSP and the sanitising above are the real XSS defence. An httpOnly cookie would need
  // CSRF protection and cookie auth on an API that is bearer-token based for OpenAI SDK clients.
  function saveSession(token, user, expiresIn) {
    state.token = token;
    state.user = user;
    state.expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : 0;
    try {
      window.sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ token: token, user: user, expiresAt: state.expiresAt }));
    } catch (e) { /* private mode: keep it in memory only */ }
  }

  function loadSession() {
    try {
      var raw = window.sessionStorage.getItem(TOKEN_KEY);
      if (!raw) return false;
      var saved = JSON.parse(raw);
      if (!saved || typeof saved.token !== 'string') return false;
      state.token = saved.token;
      state.user = saved.user || null;
      state.expiresAt = saved.expiresAt || 0;
      return true;
    } catch (e) {
      return false;
    }
  }

  function clearSession() {
    state.token = null;
    state.user = null;
    state.expiresAt = 0;
    try { window.sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
  }

  function sessionExpired() {
    if (state.streaming) state.streaming.abort();
    clearSession();
    showLogin(EXPIRED_MSG);
  }

  function authHeaders(extra) {
    var headers = extra || {};
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    return headers;
  }

  // ------------------------------------------------------------------ HTTP

  function api(path, options) {
    options = options || {};
    if (state.token && state.expiresAt && Date.now() > state.expiresAt) {
      sessionExpired();
      return Promise.reject(new ApiError(401, EXPIRED_MSG));
    }
    var headers = authHeaders({ Accept: 'application/json' });
    var init = { method: options.method || 'GET', headers: headers, signal: options.signal };
    if (options.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(options.json);
    }
    return fetch(API_BASE + path, init).then(function (resp) {
      return parseJsonResponse(resp, options.noAuthRedirect);
    });
  }

  function parseJsonResponse(resp, noAuthRedirect) {
    return resp.text().then(function (text) {
      var body = null;
      if (text) {
        try { body = JSON.parse(text); } catch (e) { body = null; }
      }
      if (!resp.ok) {
        var err = errorFromBody(resp.status, body, resp.headers.get('Retry-After'));
        if (resp.status === 401 && !noAuthRedirect) sessionExpired();
        throw err;
      }
      return body;
    });
  }

  // ------------------------------------------------------------------ Markdown

  var md = null;

  function setupMarkdown() {
    // html:false escapes any raw HTML in the model output; markdown-it's validateLink already
    // refuses javascript:/vbscript:/data: (except images) links, and DOMPurify removes anything
    // that slips through (event handlers, script, dangerous URLs).
    md = window.markdownit({ html: false, linkify: true, breaks: true, typographer: false });
    window.DOMPurify.addHook('afterSanitizeAttributes', function (node) {
      if (node.tagName === 'A') {
        node.setAttribute('target', '_blank');
        node.setAttribute('rel', 'noopener noreferrer');
      }
    });
  }

  function renderMarkdownInto(container, text) {
    var html = md.render(String(text || ''));
    var fragment = window.DOMPurify.sanitize(html, {
      RETURN_DOM_FRAGMENT: true,
      USE_PROFILES: { html: true },
      FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe'],
      FORBID_ATTR: ['style'],
    });
    container.replaceChildren(fragment);
  }

  // ------------------------------------------------------------------ small DOM helpers

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function formatBytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '';
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
    return (n / 1024 / 1024).toFixed(1) + ' MB';
  }

  function formatDate(value) {
    if (!value) return '';
    var d = typeof value === 'number' ? new Date(value * (value < 1e12 ? 1000 : 1)) : new Date(value);
    if (isNaN(d.getTime())) return '';
    return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }

  // A destructive button that needs a second click within 4 s (no native confirm() dialogs).
  function confirmButton(label, ariaLabel, onConfirm) {
    var btn = make('button', 'icon-btn danger-hover', label);
    btn.type = 'button';
    btn.setAttribute('aria-label', ariaLabel);
    var timer = null;
    btn.addEventListener('click', function (ev) {
      ev.stopPropagation();
      if (btn.dataset.armed === '1') {
        clearTimeout(timer);
        btn.dataset.armed = '';
        btn.disabled = true;
        onConfirm();
        return;
      }
      btn.dataset.armed = '1';
      btn.textContent = 'Delete?';
      btn.setAttribute('aria-label', 'Confirm: ' + ariaLabel);
      timer = setTimeout(function () {
        btn.dataset.armed = '';
        btn.textContent = label;
        btn.setAttribute('aria-label', ariaLabel);
      }, 4000);
    });
    return btn;
  }

  // ------------------------------------------------------------------ views

  function showLogin(message) {
    el.appView.hidden = true;
    el.topbarControls.hidden = true;
    el.sidebarToggle.hidden = true;
    el.loginView.hidden = false;
    hideBanner();
    if (message) {
      el.loginError.textContent = message;
      el.loginError.hidden = false;
    } else {
      el.loginError.hidden = true;
    }
    el.loginPassword.value = '';
    el.loginUsername.focus();
  }

  function showApp() {
    el.loginView.hidden = true;
    el.appView.hidden = false;
    el.topbarControls.hidden = false;
    el.sidebarToggle.hidden = false;
    el.userName.textContent = state.user && state.user.username ? state.user.username : '';
    startNewConversation();
    loadModels();
    loadConversations(true);
    loadDocuments();
    el.input.focus();
  }

  // ------------------------------------------------------------------ login / logout

  function onLogin(ev) {
    ev.preventDefault();
    var username = el.loginUsername.value.trim();
    var password = el.loginPassword.value;
    if (!username || !password) {
      el.loginError.textContent = 'Enter your username and password.';
      el.loginError.hidden = false;
      return;
    }
    el.loginSubmit.disabled = true;
    el.loginError.hidden = true;
    api('/api/auth/login', { method: 'POST', json: { username: username, password: password }, noAuthRedirect: true })
      .then(function (body) {
        if (!body || typeof body.access_token !== 'string') throw new ApiError(500, 'Unexpected login response.');
        saveSession(body.access_token, body.user || { username: username }, body.expires_in);
        showApp();
      })
      .catch(function (err) {
        var text = err instanceof ApiError && (err.status === 401 || err.status === 400)
          ? 'Wrong username or password.'
          : friendlyError(err);
        el.loginError.textContent = text;
        el.loginError.hidden = false;
      })
      .finally(function () { el.loginSubmit.disabled = false; });
  }

  function onLogout() {
    if (state.streaming) state.streaming.abort();
    var token = state.token;
    clearSession();
    showLogin();
    if (!token) return;
    // Best effort: revoke the token on the server; the page has already forgotten it.
    fetch(API_BASE + '/api/auth/logout', { method: 'POST', headers: { Authorization: 'Bearer ' + token } })
      .catch(function () { /* offline: the token expires on its own */ });
  }

  // ------------------------------------------------------------------ models and modes

  function loadModels() {
    api('/v1/models').then(function (body) {
      var ids = (body && Array.isArray(body.data) ? body.data : [])
        .filter(function (m) { return m.type !== 'embedding'; })  // /v1/embeddings' model is not for chat
        .map(function (m) { return String(m.id); });
      var bases = [];
      ids.forEach(function (id) {
        var base = id;
        KNOWN_SUFFIXES.forEach(function (s) {
          if (base.slice(-s.length) === s) base = base.slice(0, -s.length);
        });
        if (bases.indexOf(base) === -1) bases.push(base);
      });
      el.modelSelect.replaceChildren();
      bases.forEach(function (base) {
        var opt = make('option', null, base);
        opt.value = base;
        el.modelSelect.appendChild(opt);
      });
      var saved = readPref('model');
      if (saved && bases.indexOf(saved) !== -1) el.modelSelect.value = saved;
      if (!bases.length) showBanner('The server lists no models.', 'error');
    }).catch(report);
    var mode = readPref('mode');
    if (mode && MODE_SUFFIX.hasOwnProperty(mode)) el.modeSelect.value = mode;
  }

  function currentModelId() {
    var base = el.modelSelect.value;
    var suffix = MODE_SUFFIX[el.modeSelect.value] || '';
    return base + suffix;
  }

  function readPref(name) {
    try { return window.localStorage.getItem('pref_' + name); } catch (e) { return null; }
  }

  function writePref(name, value) {
    try { window.localStorage.setItem('pref_' + name, value); } catch (e) { /* ignore */ }
  }

  // ------------------------------------------------------------------ conversations

  function loadConversations(reset) {
    if (reset) state.convOffset = 0;
    var offset = state.convOffset;
    return api('/api/conversations?limit=' + CONV_PAGE + '&offset=' + offset).then(function (body) {
      var items = body && Array.isArray(body.data) ? body.data : [];
      state.conversations = reset ? items : state.conversations.concat(items);
      state.convOffset = offset + items.length;
      el.convMore.hidden = !(body && body.has_more);
      renderConversationList();
    }).catch(report);
  }

  function renderConversationList() {
    el.convList.replaceChildren();
    el.convEmpty.hidden = state.conversations.length > 0;
    state.conversations.forEach(function (conv) {
      var li = make('li', 'item');
      if (state.current && state.current.id === conv.id) li.classList.add('active');
      var open = make('button', 'item-main');
      open.type = 'button';
      var title = conv.title || 'Untitled conversation';
      open.appendChild(make('span', 'item-title', title));
      var count = typeof conv.message_count === 'number' ? conv.message_count + ' msg' : '';
      open.appendChild(make('span', 'item-sub', [count, formatDate(conv.updated_at)].filter(Boolean).join(' \u00b7 ')));
      open.setAttribute('aria-label', 'Open conversation: ' + title);
      if (li.classList.contains('active')) open.setAttribute('aria-current', 'true');
      open.addEventListener('click', function () { openConversation(conv.id); });
      li.appendChild(open);
      li.appendChild(confirmButton('\u2715', 'Delete conversation: ' + title, function () {
        deleteConversation(conv.id);
      }));
      el.convList.appendChild(li);
    });
  }

  function startNewConversation() {
    if (state.streaming) state.streaming.abort();
    state.current = { id: null, title: null, messages: [] };
    el.chatTitle.textContent = 'New conversation';
    clearMessages();
    renderConversationList();
    closeSidebarOnNarrow();
    el.input.focus();
  }

  function openConversation(id) {
    if (state.streaming) state.streaming.abort();
    return api('/api/conversations/' + encodeURIComponent(id)).then(function (conv) {
      state.current = {
        id: conv.id,
        title: conv.title,
        messages: (conv.messages || [])
          .filter(function (m) { return m.role === 'user' || m.role === 'assistant' || m.role === 'system'; })
          .map(function (m) { return { role: m.role, content: typeof m.content === 'string' ? m.content : '' }; }),
      };
      el.chatTitle.textContent = conv.title || 'Untitled conversation';
      clearMessages();
      (conv.messages || []).forEach(function (m) {
        if (m.role !== 'user' && m.role !== 'assistant') return;
        var view = addMessageView(m.role);
        if (m.role === 'user') {
          view.body.textContent = m.content || '';
        } else {
          renderMarkdownInto(view.body, m.content || '');
          if (m.agent) setAgent(view, m.agent);
          (m.steps || (m.agent && m.agent.steps) || []).forEach(function (step, i) { addStep(view, step, i); });
          if (Array.isArray(m.sources) && m.sources.length) setSources(view, m.sources);
        }
      });
      renderConversationList();
      closeSidebarOnNarrow();
      scrollToBottom(true);
    }).catch(report);
  }

  function deleteConversation(id) {
    api('/api/conversations/' + encodeURIComponent(id), { method: 'DELETE' }).then(function () {
      if (state.current && state.current.id === id) startNewConversation();
      return loadConversations(true);
    }).catch(function (err) {
      report(err);
      renderConversationList();
    });
  }

  // "new" asks the server to create the conversation (titled from the first message) and report its
  // id in the X-Conversation-Id header.
  function conversationIdForSend() {
    return state.current.id || 'new';
  }

  function refreshTitle() {
    if (!state.current || !state.current.id) return;
    var id = state.current.id;
    var match = state.conversations.filter(function (c) { return c.id === id; })[0];
    if (match && match.title) {
      state.current.title = match.title;
      el.chatTitle.textContent = match.title;
    }
  }

  // ------------------------------------------------------------------ message views

  function clearMessages() {
    el.messages.replaceChildren(el.messagesEmpty);
    el.messagesEmpty.hidden = false;
  }

  function addMessageView(role) {
    el.messagesEmpty.hidden = true;
    var node = el.messageTemplate.content.firstElementChild.cloneNode(true);
    node.classList.add(role === 'user' ? 'msg-user' : 'msg-assistant');
    node.querySelector('.msg-role').textContent = role === 'user' ? 'You' : 'Assistant';
    el.messages.appendChild(node);
    return {
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
      stepCount: 0,
    };
  }

  function setAgent(view, agent) {
    if (!agent || !agent.mode) return;
    var label = MODE_LABEL[agent.mode] || String(agent.mode);
    view.agent.textContent = label;
    view.agent.title = agent.reason ? 'Why: ' + agent.reason : '';
    view.agent.setAttribute('aria-label', 'Answered in ' + label + ' mode' + (agent.reason ? ': ' + agent.reason : ''));
  }

  function updateStepsSummary(view) {
    view.steps.hidden = false;
    view.stepsSummary.textContent = view.stepCount ? 'Steps (' + view.stepCount + ')' : 'Steps';
  }

  function addStep(view, step) {
    if (!step || typeof step !== 'object') return;
    var li = make('li', 'step');
    if (step.ok === false) li.classList.add('step-failed');
    if (!step.tool && step.kind && STEP_KIND_LABEL[step.kind]) {
      li.appendChild(make('span', 'step-kind', STEP_KIND_LABEL[step.kind]));
    }
    if (step.thought) li.appendChild(labelled('Thought', make('p', 'step-thought', step.thought)));
    if (step.tool) {
      var call = make('code', 'step-tool', step.tool);
      li.appendChild(labelled('Tool', call));
    }
    // a program run (code mode, or a chat reply's program checked in the sandbox): program and its output
    var program = step.tool === 'python_code' && typeof step.input === 'string';
    if (step.input !== undefined && step.input !== null && step.input !== '') {
      var input = typeof step.input === 'string' ? step.input : JSON.stringify(step.input, null, 2);
      li.appendChild(labelled(program ? 'Program' : 'Input', make('pre', 'step-input', input)));
    }
    if (step.observation !== undefined && step.observation !== null && step.observation !== '') {
      var obs = typeof step.observation === 'string' ? step.observation : JSON.stringify(step.observation, null, 2);
      li.appendChild(labelled(program ? 'Output' : 'Observation', make('pre', 'step-observation', obs)));
    }
    view.stepsList.appendChild(li);
    view.stepCount += 1;
    updateStepsSummary(view);
  }

  function labelled(label, node) {
    var wrap = make('div', 'step-field');
    wrap.appendChild(make('span', 'step-label', label + ':'));
    wrap.appendChild(node);
    return wrap;
  }

  function appendReasoning(view, text) {
    view.reasoning.hidden = false;
    view.reasoning.textContent += text;
    updateStepsSummary(view);
  }

  function setSources(view, sources) {
    view.sourcesList.replaceChildren();
    sources.forEach(function (src, i) {
      var li = make('li', 'source');
      var index = src.index != null ? src.index : i + 1;
      var head = make('span', 'source-head', '[' + index + '] ' + (src.filename || 'document'));
      li.appendChild(head);
      var meta = [];
      if (src.page != null) meta.push('page ' + src.page);
      if (typeof src.score === 'number') meta.push('score ' + src.score.toFixed(2));
      if (meta.length) li.appendChild(make('span', 'source-meta', ' \u2014 ' + meta.join(', ')));
      if (src.text) {
        var det = make('details', 'source-text');
        det.appendChild(make('summary', null, 'Excerpt'));
        det.appendChild(make('p', null, src.text));
        li.appendChild(det);
      }
      view.sourcesList.appendChild(li);
    });
    view.sources.hidden = sources.length === 0;
  }

  function showMessageError(view, text) {
    view.error.textContent = text;
    view.error.hidden = false;
  }

  function scrollToBottom(force) {
    var m = el.messages;
    var nearBottom = m.scrollHeight - m.scrollTop - m.clientHeight < 120;
    if (force || nearBottom) m.scrollTop = m.scrollHeight;
  }

  // ------------------------------------------------------------------ streaming chat

  // Reads a text/event-stream body: "data: {...}" lines, ":" comments (keep-alives), blank line
  // ends an event, "data: [DONE]" ends the stream. Calls onEvent(dataString) per event.
  function readSse(body, onEvent) {
    var reader = body.getReader();
    var decoder = new TextDecoder('utf-8');
    var buffer = '';
    var dataLines = [];
    var done = false;

    function dispatch() {
      if (!dataLines.length) return;
      var data = dataLines.join('\n');
      dataLines = [];
      if (data === '[DONE]') {
        done = true;
        return;
      }
      onEvent(data);
    }

    function handleLine(line) {
      if (line === '') { dispatch(); return; }
      if (line.charAt(0) === ':') return; // keep-alive comment
      var colon = line.indexOf(':');
      var field = colon === -1 ? line : line.slice(0, colon);
      var value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.charAt(0) === ' ') value = value.slice(1);
      if (field === 'data') dataLines.push(value);
    }

    function pump() {
      return reader.read().then(function (result) {
        if (result.done) {
          buffer += decoder.decode();
          if (buffer) handleLine(buffer.replace(/\r$/, ''));
          dispatch();
          return done;
        }
        buffer += decoder.decode(result.value, { stream: true });
        var lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        for (var i = 0; i < lines.length && !done; i++) handleLine(lines[i]);
        if (done) {
          reader.cancel().catch(function () {});
          return true;
        }
        return pump();
      });
    }
    return pump();
  }

  function setStreaming(controller) {
    state.streaming = controller;
    el.sendBtn.hidden = !!controller;
    el.stopBtn.hidden = !controller;
    el.input.setAttribute('aria-busy', controller ? 'true' : 'false');
    if (!controller) el.input.focus();
  }

  function onSend(ev) {
    if (ev) ev.preventDefault();
    if (state.streaming) return;
    var text = el.input.value;
    if (!text.trim()) return;
    if (!el.modelSelect.value) {
      showBanner('No model is available yet. Check that the server has loaded a model.', 'error');
      return;
    }
    hideBanner();
    el.input.value = '';
    var userView = addMessageView('user');
    userView.body.textContent = text;
    var view = addMessageView('assistant');
    view.root.classList.add('streaming');
    view.root.setAttribute('aria-busy', 'true');
    scrollToBottom(true);

    var controller = new AbortController();
    setStreaming(controller);
    var answer = '';
    var renderPending = false;
    var gotError = false;

    function scheduleRender() {
      if (renderPending) return;
      renderPending = true;
      window.requestAnimationFrame(function () {
        renderPending = false;
        renderMarkdownInto(view.body, answer);
        scrollToBottom(false);
      });
    }

    function handleChunk(data) {
      var chunk;
      try { chunk = JSON.parse(data); } catch (e) { return; }
      if (!chunk || typeof chunk !== 'object') return;
      if (chunk.error) {
        gotError = true;
        var e = chunk.error;
        showMessageError(view, 'The answer was interrupted: ' + (e.message || 'unknown error') +
          (e.code ? ' (' + e.code + ')' : ''));
        return;
      }
      if (chunk.agent) setAgent(view, chunk.agent);
      if (chunk.agent_step) addStep(view, chunk.agent_step);
      if (Array.isArray(chunk.sources)) setSources(view, chunk.sources);
      var choice = chunk.choices && chunk.choices[0];
      if (choice && choice.delta) {
        // reasoning_content repeats a structured agent_step as text; show it only when it comes alone.
        var reasoning = choice.delta.reasoning_content;
        if (typeof reasoning === 'string' && reasoning && !chunk.agent_step) appendReasoning(view, reasoning);
        if (typeof choice.delta.content === 'string' && choice.delta.content) {
          answer += choice.delta.content;
          scheduleRender();
        }
      }
      if (chunk.usage && typeof chunk.usage.total_tokens === 'number') {
        view.usage.textContent = chunk.usage.prompt_tokens + ' prompt + ' +
          chunk.usage.completion_tokens + ' completion tokens';
        view.usage.hidden = false;
      }
    }

    var conv = state.current;
    var history = conv.messages.concat([{ role: 'user', content: text }]);
    var completed = false;
    var body = {
      model: currentModelId(),
      messages: history,
      stream: true,
      stream_options: { include_usage: true },
      conversation_id: conversationIdForSend(),
    };
    if (el.useDocs.checked) body.use_documents = true;
    fetch(API_BASE + '/v1/chat/completions', {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
      body: JSON.stringify(body),
      signal: controller.signal,
    }).then(function (resp) {
      if (!resp.ok) return parseJsonResponse(resp);
      var convHeader = resp.headers.get('X-Conversation-Id');
      if (convHeader) conv.id = convHeader;
      if (!resp.body) throw new ApiError(500, 'The server sent no stream.');
      return readSse(resp.body, handleChunk).then(function (sawDone) {
        if (!sawDone && !gotError) {
          showMessageError(view, 'The connection closed before the answer finished.');
        }
        completed = sawDone && !gotError;
      });
    }).catch(function (err) {
      if (err && err.name === 'AbortError') {
        showMessageError(view, 'Stopped \u2014 generation was cancelled.');
        view.error.classList.add('msg-note');
        return;
      }
      if (err instanceof ApiError && err.status === 401) return;
      showMessageError(view, friendlyError(err));
    }).finally(function () {
      renderMarkdownInto(view.body, answer);
      view.root.classList.remove('streaming');
      view.root.removeAttribute('aria-busy');
      if (state.streaming === controller) setStreaming(null);
      // The server stores an exchange only when it completes, so only then does it join the history
      // sent with the next question.
      if (completed) conv.messages = history.concat([{ role: 'assistant', content: answer }]);
      if (state.token) {
        loadConversations(true).then(function () { if (state.current === conv) refreshTitle(); });
      }
      scrollToBottom(false);
    });
  }

  function onStop() {
    if (state.streaming) state.streaming.abort();
  }

  function onComposerKey(ev) {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      onSend();
    }
  }

  // ------------------------------------------------------------------ documents

  function loadDocuments() {
    return api('/api/files/documents?limit=100&offset=0').then(function (body) {
      var docs = body && Array.isArray(body.data) ? body.data : [];
      el.docList.replaceChildren();
      el.docEmpty.hidden = docs.length > 0;
      docs.forEach(function (doc) {
        var li = make('li', 'item');
        var main = make('div', 'item-main static');
        var name = doc.filename || 'document';
        main.appendChild(make('span', 'item-title', name));
        var meta = [formatBytes(doc.size)];
        if (doc.pages != null) meta.push(doc.pages + (doc.pages === 1 ? ' page' : ' pages'));
        if (doc.chunks != null) meta.push(doc.chunks + (doc.chunks === 1 ? ' chunk' : ' chunks'));
        main.appendChild(make('span', 'item-sub', meta.filter(Boolean).join(' \u00b7 ')));
        li.appendChild(main);
        li.appendChild(confirmButton('\u2715', 'Delete document: ' + name, function () {
          api('/api/files/documents/' + encodeURIComponent(doc.file_id), { method: 'DELETE' })
            .then(loadDocuments)
            .catch(function (err) { report(err); loadDocuments(); });
        }));
        el.docList.appendChild(li);
      });
    }).catch(report);
  }

  function onFilesChosen() {
    state.pendingFiles = Array.prototype.slice.call(el.uploadInput.files || []);
    el.uploadBtn.disabled = state.pendingFiles.length === 0;
    el.uploadChosen.textContent = state.pendingFiles.length === 1
      ? state.pendingFiles[0].name
      : (state.pendingFiles.length ? state.pendingFiles.length + ' files' : '');
  }

  function onUpload(ev) {
    ev.preventDefault();
    var files = state.pendingFiles;
    if (!files.length) return;
    var form = new FormData();
    files.forEach(function (f) { form.append('files', f, f.name); });
    var xhr = new XMLHttpRequest();
    xhr.open('POST', API_BASE + '/api/files/upload');
    if (state.token) xhr.setRequestHeader('Authorization', 'Bearer ' + state.token);
    xhr.setRequestHeader('Accept', 'application/json');
    el.uploadStatus.hidden = false;
    el.uploadProgress.value = 0;
    el.uploadProgress.removeAttribute('aria-valuetext');
    el.uploadStatusText.textContent = 'Uploading\u2026';
    el.uploadBtn.disabled = true;

    xhr.upload.addEventListener('progress', function (e) {
      if (!e.lengthComputable) return;
      var pct = Math.round((e.loaded / e.total) * 100);
      el.uploadProgress.value = pct;
      el.uploadStatusText.textContent = pct < 100 ? 'Uploading\u2026 ' + pct + '%' : 'Processing\u2026';
    });
    xhr.addEventListener('load', function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) {
        var items = body && Array.isArray(body.data) ? body.data : [];
        var failed = items.filter(function (d) { return d.status === 'failed'; });
        var done = items.length - failed.length;
        el.uploadProgress.value = 100;
        var summary = 'Uploaded ' + done + (done === 1 ? ' file' : ' files') + '.';
        failed.forEach(function (d) {
          summary += ' Could not use ' + (d.filename || 'a file') + ': ' +
            ((d.error && d.error.message) || 'unknown error') + '.';
        });
        el.uploadStatusText.textContent = summary;
        el.uploadInput.value = '';
        onFilesChosen();
        loadDocuments();
      } else {
        var err = errorFromBody(xhr.status, body, xhr.getResponseHeader('Retry-After'));
        if (xhr.status === 401) { sessionExpired(); return; }
        el.uploadStatusText.textContent = 'Upload failed: ' + friendlyError(err);
        el.uploadBtn.disabled = false;
      }
    });
    xhr.addEventListener('error', function () {
      el.uploadStatusText.textContent = 'Upload failed: ' + friendlyError(new TypeError('network'));
      el.uploadBtn.disabled = false;
    });
    xhr.addEventListener('abort', function () {
      el.uploadStatusText.textContent = 'Upload cancelled.';
      el.uploadBtn.disabled = false;
    });
    xhr.send(form);
  }

  // ------------------------------------------------------------------ theme and layout

  function currentTheme() {
    var set = document.documentElement.getAttribute('data-theme');
    if (set) return set;
    return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }

  function updateThemeButton() {
    var next = currentTheme() === 'dark' ? 'light' : 'dark';
    el.themeToggle.setAttribute('aria-label', 'Switch to ' + next + ' theme');
    el.themeToggle.title = 'Switch to ' + next + ' theme';
  }

  function toggleTheme() {
    var next = currentTheme() === 'dark' ? 'light' : 'dark';
    document.documentElement.setAttribute('data-theme', next);
    try { window.localStorage.setItem('theme', next); } catch (e) { /* ignore */ }
    updateThemeButton();
  }

  function toggleSidebar(force) {
    var open = typeof force === 'boolean' ? force : !document.body.classList.contains('sidebar-open');
    document.body.classList.toggle('sidebar-open', open);
    el.sidebarToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
  }

  function closeSidebarOnNarrow() {
    if (document.body.classList.contains('sidebar-open')) toggleSidebar(false);
  }

  // ------------------------------------------------------------------ start

  function init() {
    [
      ['banner', 'banner'], ['bannerText', 'banner-text'], ['bannerClose', 'banner-close'],
      ['loginView', 'login-view'], ['loginForm', 'login-form'], ['loginError', 'login-error'],
      ['loginUsername', 'login-username'], ['loginPassword', 'login-password'], ['loginSubmit', 'login-submit'],
      ['appView', 'app-view'], ['topbarControls', 'topbar-controls'], ['sidebarToggle', 'sidebar-toggle'],
      ['userName', 'user-name'], ['logoutBtn', 'logout-btn'], ['themeToggle', 'theme-toggle'],
      ['modelSelect', 'model-select'], ['modeSelect', 'mode-select'],
      ['convList', 'conv-list'], ['convEmpty', 'conv-empty'], ['convMore', 'conv-more'], ['newConvBtn', 'new-conv-btn'],
      ['chatTitle', 'chat-title'], ['messages', 'messages'], ['messagesEmpty', 'messages-empty'],
      ['composer', 'composer'], ['input', 'composer-input'], ['sendBtn', 'send-btn'], ['stopBtn', 'stop-btn'],
      ['useDocs', 'use-docs'], ['uploadForm', 'upload-form'], ['uploadInput', 'upload-input'],
      ['uploadBtn', 'upload-btn'], ['uploadChosen', 'upload-chosen'], ['uploadStatus', 'upload-status'],
      ['uploadProgress', 'upload-progress'], ['uploadStatusText', 'upload-status-text'],
      ['docList', 'doc-list'], ['docEmpty', 'doc-empty'], ['messageTemplate', 'message-template'],
    ].forEach(function (pair) { el[pair[0]] = $(pair[1]); });

    if (!window.markdownit || !window.DOMPurify) {
      showBanner('The page did not load completely (missing vendor scripts). Reload to try again.', 'error');
      return;
    }
    setupMarkdown();

    el.loginForm.addEventListener('submit', onLogin);
    el.logoutBtn.addEventListener('click', onLogout);
    el.themeToggle.addEventListener('click', toggleTheme);
    el.bannerClose.addEventListener('click', hideBanner);
    el.sidebarToggle.addEventListener('click', function () { toggleSidebar(); });
    el.appView.addEventListener('click', function (ev) {
      // A click on the dimmed area beside the open drawer closes it (narrow screens).
      if (document.body.classList.contains('sidebar-open') && !$('sidebar').contains(ev.target)) toggleSidebar(false);
    });
    el.newConvBtn.addEventListener('click', startNewConversation);
    el.convMore.addEventListener('click', function () { loadConversations(false); });
    el.composer.addEventListener('submit', onSend);
    el.input.addEventListener('keydown', onComposerKey);
    el.stopBtn.addEventListener('click', onStop);
    el.uploadInput.addEventListener('change', onFilesChosen);
    el.uploadForm.addEventListener('submit', onUpload);
    el.modelSelect.addEventListener('change', function () { writePref('model', el.modelSelect.value); });
    el.modeSelect.addEventListener('change', function () { writePref('mode', el.modeSelect.value); });
    el.useDocs.checked = readPref('use_docs') === '1';
    el.useDocs.addEventListener('change', function () { writePref('use_docs', el.useDocs.checked ? '1' : '0'); });
    document.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape' && state.streaming) onStop();
      if (ev.key === 'Escape' && document.body.classList.contains('sidebar-open')) toggleSidebar(false);
    });
    if (window.matchMedia) {
      var mq = window.matchMedia('(prefers-color-scheme: dark)');
      if (mq.addEventListener) mq.addEventListener('change', updateThemeButton);
    }
    updateThemeButton();

    if (loadSession() && (!state.expiresAt || Date.now() < state.expiresAt)) {
      showApp();
    } else {
      var hadSession = !!state.token;
      clearSession();
      showLogin(hadSession ? EXPIRED_MSG : null);
    }
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
