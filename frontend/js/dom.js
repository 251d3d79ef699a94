// Small DOM helpers shared by every view. User- or model-supplied text only ever goes in through
// textContent (make(), setText()); Markdown goes through markdown.js (sanitised).

export const $ = (id) => document.getElementById(id);

export function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function button(label, className, onClick, ariaLabel) {
  const btn = make('button', className || 'btn btn-secondary btn-small', label);
  btn.type = 'button';
  if (ariaLabel) btn.setAttribute('aria-label', ariaLabel);
  if (onClick) btn.addEventListener('click', onClick);
  return btn;
}

export function formatBytes(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '';
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
  return (n / 1024 / 1024).toFixed(1) + ' MB';
}

export function formatDate(value) {
  if (!value) return '';
  const d = typeof value === 'number' ? new Date(value * (value < 1e12 ? 1000 : 1)) : new Date(value);
  if (isNaN(d.getTime())) return '';
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

// A destructive button that needs a second click within 4 s (no native confirm() dialogs).
export function confirmButton(label, ariaLabel, onConfirm, className) {
  const btn = make('button', className || 'icon-btn danger-hover', label);
  btn.type = 'button';
  btn.setAttribute('aria-label', ariaLabel);
  let timer = null;
  btn.addEventListener('click', (ev) => {
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
    timer = setTimeout(() => {
      btn.dataset.armed = '';
      btn.textContent = label;
      btn.setAttribute('aria-label', ariaLabel);
    }, 4000);
  });
  return btn;
}

// Copies text to the clipboard; falls back to a hidden textarea where the Clipboard API is refused.
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (e) {
    const area = make('textarea', 'visually-hidden');
    area.value = text;
    area.setAttribute('aria-hidden', 'true');
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch (err) { ok = false; }
    area.remove();
    return ok;
  }
}

// A "Copy" button whose label confirms the copy for two seconds (and announces it).
export function copyButton(getText, ariaLabel, className) {
  const btn = button('Copy', className || 'btn btn-ghost btn-small copy-btn', null, ariaLabel);
  btn.addEventListener('click', async (ev) => {
    ev.stopPropagation();
    const ok = await copyText(getText());
    btn.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { btn.textContent = 'Copy'; }, 2000);
  });
  return btn;
}

// Saves a Blob as a file through a temporary object URL (no navigation, CSP-safe).
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = make('a');
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function filenameFrom(disposition, fallback) {
  const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition || '');
  if (!m) return fallback;
  try { return decodeURIComponent(m[1]); } catch (e) { return m[1]; }
}

export function readPref(name) {
  try { return window.localStorage.getItem('pref_' + name); } catch (e) { return null; }
}

export function writePref(name, value) {
  try { window.localStorage.setItem('pref_' + name, value); } catch (e) { /* storage disabled */ }
}
