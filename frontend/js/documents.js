// My documents: drag-and-drop or chosen files, each uploaded on its own with its own progress and
// ingestion status (an async job polled until it ends), the list with per-document delete and
// the conversations that cited each document.
import { api, friendlyError, uploadForm } from './api.js';
import { $, button, confirmButton, formatBytes, make } from './dom.js';

let hooks = { report: () => {}, openConversation: () => {} };
let pending = [];
const POLL_MS = 500;

export function setDocumentHooks(h) { hooks = { ...hooks, ...h }; }

export async function loadDocuments() {
  try {
    const body = await api('/api/files/documents?limit=100&offset=0');
    const docs = body && Array.isArray(body.data) ? body.data : [];
    const list = $('doc-list');
    list.replaceChildren();
    $('doc-empty').hidden = docs.length > 0;
    docs.forEach((doc) => list.appendChild(documentItem(doc)));
  } catch (err) {
    hooks.report(err);
  }
}

function documentItem(doc) {
  const li = make('li', 'item');
  const main = make('div', 'item-main static');
  const name = doc.filename || 'document';
  main.appendChild(make('span', 'item-title', name));
  const meta = [formatBytes(doc.size)];
  if (doc.pages != null) meta.push(doc.pages + (doc.pages === 1 ? ' page' : ' pages'));
  if (doc.chunks != null) meta.push(doc.chunks + (doc.chunks === 1 ? ' chunk' : ' chunks'));
  main.appendChild(make('span', 'item-sub', meta.filter(Boolean).join(' \u00b7 ')));
  if (Array.isArray(doc.cited_in) && doc.cited_in.length) {
    const cited = make('div', 'cited-in');
    cited.appendChild(make('span', 'item-sub', 'Cited in: '));
    doc.cited_in.forEach((c) => {
      const title = c.title || 'Untitled conversation';
      cited.appendChild(button(title, 'link-btn', () => hooks.openConversation(c.conversation_id),
        'Open conversation citing ' + name + ': ' + title));
    });
    main.appendChild(cited);
  }
  li.appendChild(main);
  li.appendChild(confirmButton('\u2715', 'Delete document: ' + name, async () => {
    try {
      await api('/api/files/documents/' + encodeURIComponent(doc.file_id), { method: 'DELETE' });
    } catch (err) {
      hooks.report(err);
    }
    loadDocuments();
  }));
  return li;
}

export function onFilesChosen() {
  choose([...($('upload-input').files || [])]);
}

function choose(files) {
  pending = files;
  $('upload-btn').disabled = pending.length === 0;
  $('upload-chosen').textContent = pending.length === 1 ? pending[0].name : (pending.length ? pending.length + ' files' : '');
}

// One row per file: name, a progress bar (upload, then ingestion) and a status line.
function queueRow(file) {
  const li = make('li', 'upload-row');
  li.appendChild(make('span', 'upload-name', file.name));
  const bar = make('progress');
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute('aria-label', 'Progress for ' + file.name);
  li.appendChild(bar);
  const status = make('span', 'upload-state small', 'Waiting\u2026');
  li.appendChild(status);
  $('upload-queue').appendChild(li);
  return {
    set(pct, text, kind) {
      bar.value = Math.round(pct);
      status.textContent = text;
      li.dataset.state = kind || 'running';
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForJob(job, row) {
  for (;;) {
    if (job.status === 'succeeded') return job.result;
    if (job.status === 'failed') throw Object.assign(new Error('ingestion failed'), { jobError: job.error });
    const pct = typeof job.progress === 'number' ? job.progress * 100 : 0;
    row.set(pct, (job.stage ? job.stage.charAt(0).toUpperCase() + job.stage.slice(1) : 'Processing') + '\u2026 ' + Math.round(pct) + '%');
    await sleep(POLL_MS);
    job = await api('/api/files/jobs/' + encodeURIComponent(job.id));
  }
}

async function uploadOne(file, row) {
  const form = new FormData();
  form.append('files', file, file.name);
  const resp = await uploadForm('/api/files/upload?async=true', form, (f) => {
    row.set(f * 100, f < 1 ? 'Uploading\u2026 ' + Math.round(f * 100) + '%' : 'Processing\u2026');
  });
  const result = resp.status === 202 ? await waitForJob(resp.body, row) : resp.body;
  const entry = (result && Array.isArray(result.data) ? result.data : [])[0] || {};
  if (entry.status === 'failed') {
    throw Object.assign(new Error('failed'), { jobError: entry.error });
  }
  const chunks = entry.chunks != null ? ' (' + entry.chunks + (entry.chunks === 1 ? ' chunk' : ' chunks') + ')' : '';
  row.set(100, 'Ready' + chunks, 'done');
}

export async function uploadFiles(files) {
  if (!files.length) return;
  $('upload-btn').disabled = true;
  $('upload-status').hidden = false;
  $('upload-queue').replaceChildren();
  const overall = $('upload-progress');
  overall.value = 0;
  $('upload-status-text').textContent = 'Uploading\u2026';
  let done = 0;
  const problems = [];
  for (let i = 0; i < files.length; i++) {
    const file = files[i];
    const row = queueRow(file);
    try {
      await uploadOne(file, row);
      done += 1;
    } catch (err) {
      const why = err.jobError ? (err.jobError.message || 'unknown error') : friendlyError(err);
      row.set(100, 'Failed: ' + why, 'failed');
      problems.push('Could not use ' + file.name + ': ' + why + '.');
    }
    overall.value = Math.round(((i + 1) / files.length) * 100);
    loadDocuments();
  }
  $('upload-status-text').textContent = 'Uploaded ' + done + (done === 1 ? ' file' : ' files') + '.' +
    (problems.length ? ' ' + problems.join(' ') : '');
  $('upload-input').value = '';
  choose([]);
}

export function onUpload(ev) {
  ev.preventDefault();
  uploadFiles(pending);
}

// The documents panel is also a drop zone (the file button stays the keyboard way in).
export function setupDropZone(zone) {
  const over = (ev) => {
    if (![...(ev.dataTransfer && ev.dataTransfer.types) || []].includes('Files')) return;
    ev.preventDefault();
    zone.classList.add('drop-active');
  };
  zone.addEventListener('dragenter', over);
  zone.addEventListener('dragover', over);
  zone.addEventListener('dragleave', (ev) => {
    if (!zone.contains(ev.relatedTarget)) zone.classList.remove('drop-active');
  });
  zone.addEventListener('drop', (ev) => {
    zone.classList.remove('drop-active');
    const files = [...((ev.dataTransfer && ev.dataTransfer.files) || [])];
    if (!files.length) return;
    ev.preventDefault();
    uploadFiles(files);
  });
}
