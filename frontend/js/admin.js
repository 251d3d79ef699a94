// Administration (admins only): users with their usage, create, disable/enable, reset password, delete.
import { api, friendlyError } from './api.js';
import { $, button, confirmButton, formatBytes, formatDate, make } from './dom.js';
import { session } from './session.js';

let hooks = { report: () => {} };
export function setAdminHooks(h) { hooks = { ...hooks, ...h }; }

function say(text, ok) {
  const node = $('admin-status');
  node.textContent = text;
  node.className = 'form-status ' + (ok ? 'ok' : 'form-error');
  node.hidden = !text;
}

function usageCells(tr, usage) {
  const u = usage || {};
  const num = (v) => (typeof v === 'number' ? String(v) : '\u2014');
  tr.appendChild(make('td', 'num', num(u.requests)));
  tr.appendChild(make('td', 'num', typeof u.prompt_tokens === 'number'
    ? u.prompt_tokens + ' / ' + (u.completion_tokens || 0) : '\u2014'));
  tr.appendChild(make('td', 'num', num(u.documents)));
  tr.appendChild(make('td', 'num', typeof u.bytes === 'number' ? formatBytes(u.bytes) : '\u2014'));
}

async function patchUser(user, json, done) {
  try {
    await api('/api/admin/users/' + encodeURIComponent(user.id), { method: 'PATCH', json });
    say(done, true);
  } catch (err) {
    say(friendlyError(err), false);
  }
  loadUsers();
}

function resetPasswordCell(user) {
  const cell = make('td');
  const form = make('form', 'inline-form');
  const id = 'reset-' + user.id;
  const label = make('label', 'visually-hidden', 'New password for ' + user.username);
  label.htmlFor = id;
  const input = make('input');
  input.type = 'password';
  input.id = id;
  input.autocomplete = 'new-password';
  input.placeholder = 'New password';
  const save = make('button', 'btn btn-secondary btn-small', 'Reset');
  save.type = 'submit';
  save.setAttribute('aria-label', 'Reset password of ' + user.username);
  form.append(label, input, save);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!input.value) { input.focus(); return; }
    patchUser(user, { password: input.value }, 'Password of ' + user.username + ' reset.');
  });
  cell.appendChild(form);
  return cell;
}

export async function loadUsers() {
  try {
    const body = await api('/api/admin/users?limit=500');
    const users = body && Array.isArray(body.data) ? body.data : [];
    const rows = $('user-rows');
    rows.replaceChildren();
    users.forEach((u) => {
      const tr = make('tr');
      tr.dataset.username = u.username;
      tr.appendChild(make('td', null, u.username));
      tr.appendChild(make('td', null, u.role));
      tr.appendChild(make('td', 'user-state', u.disabled ? 'disabled' : 'active'));
      tr.appendChild(make('td', null, formatDate(u.created_at)));
      usageCells(tr, u.usage);
      const actions = make('td', 'actions');
      const self = session.user && session.user.id === u.id;
      if (!self) {
        actions.appendChild(button(u.disabled ? 'Enable' : 'Disable', 'btn btn-secondary btn-small toggle-user',
          () => patchUser(u, { disabled: !u.disabled }, u.username + (u.disabled ? ' enabled.' : ' disabled.')),
          (u.disabled ? 'Enable ' : 'Disable ') + u.username));
        actions.appendChild(confirmButton('Delete', 'Delete user ' + u.username, async () => {
          try {
            await api('/api/admin/users/' + encodeURIComponent(u.id), { method: 'DELETE' });
            say(u.username + ' deleted.', true);
          } catch (err) {
            say(friendlyError(err), false);
          }
          loadUsers();
        }, 'btn btn-secondary btn-small'));
      }
      tr.appendChild(resetPasswordCell(u));
      tr.appendChild(actions);
      rows.appendChild(tr);
    });
  } catch (err) {
    hooks.report(err);
  }
}

export async function createUser(ev) {
  ev.preventDefault();
  const json = {
    username: $('new-user-name').value.trim(),
    password: $('new-user-password').value,
    role: $('new-user-admin').checked ? 'admin' : 'user',
  };
  try {
    await api('/api/admin/users', { method: 'POST', json });
    $('user-form').reset();
    say('User ' + json.username + ' created.', true);
    loadUsers();
  } catch (err) {
    say(friendlyError(err), false);
  }
}
