// Per-conversation settings (system prompt, temperature, model, mode), stored with the
// conversation through PATCH /api/conversations/{id} {"settings": …}.
import { api } from './api.js';
import { $ } from './dom.js';
import { currentModelAndMode, showModelAndMode } from './models.js';
import { state } from './state.js';

export function showSettings(settings) {
  const s = settings || {};
  $('set-system').value = s.system_prompt || '';
  $('set-temperature').value = typeof s.temperature === 'number' ? String(s.temperature) : '';
  $('set-status').textContent = '';
  showModelAndMode(s);
}

// The form's values; null where the user left a field empty (= the server default).
export function readSettings() {
  const system = $('set-system').value.trim();
  const tRaw = $('set-temperature').value.trim();
  let temperature = null;
  if (tRaw !== '') {
    temperature = Number(tRaw);
    if (!isFinite(temperature) || temperature < 0 || temperature > 2) {
      throw new RangeError('Temperature must be a number from 0 to 2.');
    }
  }
  return { system_prompt: system || null, temperature, ...currentModelAndMode() };
}

// Makes sure the open conversation exists on the server (so settings can be stored before the
// first question) and returns its id.
export async function ensureConversation() {
  const conv = state.current;
  if (conv.id) return conv.id;
  const created = await api('/api/conversations', { method: 'POST', json: {} });
  conv.id = created.id;
  return conv.id;
}

export async function saveSettings() {
  const settings = readSettings();
  const id = await ensureConversation();
  const updated = await api('/api/conversations/' + encodeURIComponent(id), { method: 'PATCH', json: { settings } });
  state.current.settings = (updated && updated.settings) || settings;
  return state.current.settings;
}
