// The page-wide message bar (errors and notices that do not belong to one message).
import { $ } from './dom.js';

export function showBanner(text, kind) {
  $('banner-text').textContent = text;
  $('banner').className = 'banner' + (kind ? ' banner-' + kind : '');
  $('banner').hidden = false;
}

export function hideBanner() {
  $('banner').hidden = true;
}
