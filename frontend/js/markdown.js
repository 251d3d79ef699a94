// Assistant Markdown → sanitised DOM, with highlighted code blocks that each carry a Copy button.
//
// html:false escapes any raw HTML in the model output; markdown-it's validateLink already refuses
// javascript:/vbscript:/data: (except images) links, and DOMPurify removes anything that slips
// through (event handlers, script, dangerous URLs). Highlight.js works on the code's text and its
// output (spans with hljs-* classes) is sanitised again before it replaces the text.
import hljs from '../vendor/highlight.min.js';
import { copyButton, make } from './dom.js';

let md = null;
const PURIFY = {
  RETURN_DOM_FRAGMENT: true,
  USE_PROFILES: { html: true },
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe'],
  FORBID_ATTR: ['style'],
};
const AUTO_LANGUAGES = ['python', 'javascript', 'typescript', 'bash', 'json', 'sql', 'html', 'xml', 'css',
  'java', 'c', 'cpp', 'go', 'rust', 'yaml', 'markdown'];

export function vendorsLoaded() {
  return !!(window.markdownit && window.DOMPurify);
}

export function setupMarkdown() {
  md = window.markdownit({ html: false, linkify: true, breaks: true, typographer: false });
  hljs.configure({ ignoreUnescapedHTML: true });
  window.DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A') {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
  });
}

// Highlights one <code> element in place from its text; `language` may be empty (auto-detect).
export function highlightCode(code, language) {
  const text = code.textContent;
  if (!text.trim() || text.length > 100_000) return;
  let result;
  try {
    result = language && hljs.getLanguage(language)
      ? hljs.highlight(text, { language, ignoreIllegals: true })
      : hljs.highlightAuto(text, AUTO_LANGUAGES);
  } catch (e) {
    return;
  }
  const clean = window.DOMPurify.sanitize(result.value, { RETURN_DOM_FRAGMENT: true, ALLOWED_TAGS: ['span'], ALLOWED_ATTR: ['class'] });
  code.replaceChildren(clean);
  code.classList.add('hljs');
  if (result.language) code.dataset.language = result.language;
}

function decorateCodeBlocks(container) {
  container.querySelectorAll('pre > code').forEach((code) => {
    const pre = code.parentElement;
    const m = /(?:^|\s)language-([\w+#-]+)/.exec(code.className);
    highlightCode(code, m ? m[1] : '');
    const bar = make('div', 'code-bar');
    bar.appendChild(make('span', 'code-lang', (m && m[1]) || code.dataset.language || 'code'));
    bar.appendChild(copyButton(() => code.textContent, 'Copy code block'));
    const wrap = make('div', 'code-block');
    pre.replaceWith(wrap);
    wrap.appendChild(bar);
    wrap.appendChild(pre);
  });
}

export function renderMarkdownInto(container, text) {
  const fragment = window.DOMPurify.sanitize(md.render(String(text || '')), PURIFY);
  container.replaceChildren(fragment);
  decorateCodeBlocks(container);
}
