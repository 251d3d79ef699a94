// The model and mode pickers: models from /v1/models (base ids; modes are id suffixes).
import { api } from './api.js';
import { showBanner } from './banner.js';
import { $, make, readPref, writePref } from './dom.js';
import { KNOWN_SUFFIXES, MODE_SUFFIX } from './state.js';

export function baseModel(id) {
  let base = String(id);
  KNOWN_SUFFIXES.forEach((s) => { if (base.endsWith(s)) base = base.slice(0, -s.length); });
  return base;
}

export async function loadModels(report) {
  try {
    const body = await api('/v1/models');
    const ids = (body && Array.isArray(body.data) ? body.data : [])
      .filter((m) => m.type !== 'embedding') // /v1/embeddings' model is not for chat
      .map((m) => String(m.id));
    const bases = [];
    ids.forEach((id) => { const b = baseModel(id); if (!bases.includes(b)) bases.push(b); });
    const select = $('model-select');
    const keep = select.dataset.wanted || readPref('model');
    select.replaceChildren(...bases.map((b) => { const o = make('option', null, b); o.value = b; return o; }));
    if (keep && bases.includes(keep)) select.value = keep;
    if (!bases.length) showBanner('The server lists no models.', 'error');
  } catch (err) {
    report(err);
  }
  const mode = readPref('mode');
  if (mode && Object.prototype.hasOwnProperty.call(MODE_SUFFIX, mode)) $('mode-select').value = mode;
}

export function currentModelId() {
  return $('model-select').value + (MODE_SUFFIX[$('mode-select').value] || '');
}

export function currentModelAndMode() {
  return { model: $('model-select').value || null, mode: $('mode-select').value || null };
}

// Shows a conversation's stored model/mode in the pickers (the saved preference otherwise).
export function showModelAndMode(settings) {
  const select = $('model-select');
  const model = (settings && settings.model) || readPref('model');
  select.dataset.wanted = model || '';
  if (model && [...select.options].some((o) => o.value === model)) select.value = model;
  const mode = (settings && settings.mode) || readPref('mode');
  if (mode && Object.prototype.hasOwnProperty.call(MODE_SUFFIX, mode)) $('mode-select').value = mode;
}

export function rememberPickers() {
  writePref('model', $('model-select').value);
  writePref('mode', $('mode-select').value);
}
