// My account: API keys (the secret is shown once, with a Copy button), password change, and
// export or deletion of my data.
import { api, download, friendlyError } from './api.js';
import { $, confirmButton, copyButton, formatDate, make } from './dom.js';
import { saveSession, session } from './session.js';

let hooks = { report: () => {}, deleted: () => {} };
export function setAccountHooks(h) { hooks = { ...hooks, ...h }; }

function say(id, text, ok) {
  const node = $(id);
  node.textContent = text;
  node.className = 'form-status ' + (ok ? 'ok' : 'form-error');
  node.hidden = !text;
}

export function showAccount() {
  $('account-user').textContent = session.user ? session.user.username + ' (' + (session.user.role || 'user') + ')' : '';
  $('new-key-box').hidden = true;
  loadKeys();
}

export async function loadKeys() {
  try {
    const body = await api('/api/keys');
    const keys = body && Array.isArray(body.data) ? body.data : [];
    const rows = $('key-rows');
    rows.replaceChildren();
    $('keys-empty').hidden = keys.length > 0;
    $('keys-table').hidden = keys.length === 0;
    keys.forEach((k) => {
      const tr = make('tr');
      tr.appendChild(make('td', null, k.name || '(unnamed)'));
      tr.appendChild(make('td', 'mono', k.prefix || ''));
      tr.appendChild(make('td', null, (k.scopes || []).join(', ')));
      tr.appendChild(make('td', null, formatDate(k.created_at)));
      tr.appendChild(make('td', null, k.expires_at ? formatDate(k.expires_at) : 'never'));
      tr.appendChild(make('td', null, k.last_used_at ? formatDate(k.last_used_at) : '\u2014'));
      const cell = make('td');
      cell.appendChild(confirmButton('Revoke', 'Revoke key ' + (k.name || k.prefix), async () => {
        try {
          await api('/api/keys/' + encodeURIComponent(k.id), { method: 'DELETE' });
        } catch (err) {
          hooks.report(err);
        }
        loadKeys();
      }, 'btn btn-secondary btn-small'));
      tr.appendChild(cell);
      rows.appendChild(tr);
    });
  } catch (err) {
    hooks.report(err);
  }
}

export async function createKey(ev) {
  ev.preventDefault();
  const name = $('key-name').value.trim();
  const scopes = [...document.querySelectorAll('#key-form input[name="scope"]:checked')].map((c) => c.value);
  const days = $('key-days').value.trim();
  const json = { name: name || null, scopes: scopes.length ? scopes : ['inference'] };
  if (days) json.expires_in_days = Number(days);
  say('key-status', '', true);
  try {
    const created = await api('/api/keys', { method: 'POST', json });
    $('new-key-value').textContent = created.key;
    const box = $('new-key-box');
    box.querySelector('.copy-slot').replaceChildren(copyButton(() => created.key, 'Copy the new API key'));
    box.hidden = false;
    $('key-form').reset();
    $('new-key-value').focus();
    loadKeys();
  } catch (err) {
    say('key-status', friendlyError(err), false);
  }
}

export async function changePassword(ev) {
  ev.preventDefault();
  const current = $('pw-current').value;
  const next = $('pw-new').value;
  if (next !== $('pw-repeat').value) { say('pw-status', 'The new passwords do not match.', false); return; }
  try {
    const body = await api('/api/auth/password', {
      method: 'POST', json: { current_password: current, new_password: next }, noAuthRedirect: true,
    });
    // the change revokes older tokens: carry on with the one it returned
    if (body && body.access_token) saveSession(body.access_token, body.user || session.user, body.expires_in);
    $('pw-form').reset();
    say('pw-status', 'Password changed.', true);
  } catch (err) {
    say('pw-status', err.status === 401 || err.status === 400 ? (err.message || 'The current password is wrong.') : friendlyError(err), false);
  }
}

export async function exportAccount() {
  try {
    await download('/api/account/export', 'account-export.zip');
    say('data-status', 'Export downloaded.', true);
  } catch (err) {
    say('data-status', friendlyError(err), false);
  }
}

export async function deleteAccount(ev) {
  ev.preventDefault();
  const user = session.user && session.user.username;
  if ($('delete-confirm').value !== user) {
    say('data-status', 'Type your username to confirm.', false);
    return;
  }
  try {
    await api('/api/account', { method: 'DELETE' });
    hooks.deleted();
  } catch (err) {
    say('data-status', friendlyError(err), false);
  }
}
