// Applies a theme the user picked earlier before the page paints (no flash).
// Without a saved choice the stylesheet follows prefers-color-scheme.
(function () {
  'use strict';
  try {
    var saved = window.localStorage.getItem('theme');
    if (saved === 'light' || saved === 'dark') {
      document.documentElement.setAttribute('data-theme', saved);
    }
  } catch (e) {
    // Storage can be disabled; the system preference still applies.
  }
})();
