// Where the page sends API requests. An empty apiBase means "same origin as this page"
// (the backend serves the page itself, or nginx proxies /api and /v1).
// For a split deployment run_frontend.py --api-origin https://api.example.com generates this
// file on the fly; when editing it by hand also allow the origin in the CSP connect-src.
window.APP_CONFIG = Object.freeze({ apiBase: '' });
