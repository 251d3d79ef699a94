"""Serve the static chat page (frontend/) on its own port, for a split deployment.

The backend already serves the same page at ``/``; use this only when the page and the API live on
different origins.  It proxies nothing: the page talks straight to ``--api-origin``, which is written
into a generated ``config.js`` and allowed in the Content-Security-Policy's ``connect-src`` (the
backend must then list this page's origin in ``CORS_ORIGINS``).

    python run_frontend.py --port 3000 --api-origin http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

FRONTEND_DIR = Path(__file__).resolve().parent / "frontend"
log = logging.getLogger("run_frontend")


def build_csp(api_origin: str | None = None) -> str:
    """The page's Content-Security-Policy; ``api_origin`` is added to connect-src when the API is elsewhere."""
    connect = "'self'" + (f" {api_origin}" if api_origin else "")
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; font-src 'self'; object-src 'none'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    )


def security_headers(api_origin: str | None = None) -> dict[str, str]:
    """Headers sent with every response (the same set the backend and nginx send)."""
    return {
        "Content-Security-Policy": build_csp(api_origin),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }


def normalise_origin(value: str) -> str:
    """Validate ``scheme://host[:port]`` (no path, query or credentials) and return it without a trailing slash."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"--api-origin must look like https://host[:port], got {value!r}")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        raise argparse.ArgumentTypeError(f"--api-origin must be an origin only (no path or credentials): {value!r}")
    if any(c in value for c in " ;'\"\r\n"):
        raise argparse.ArgumentTypeError(f"--api-origin contains characters not allowed in an origin: {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


def config_js(api_origin: str | None) -> bytes:
    """The generated ``config.js``: where the page sends its API requests."""
    return ("window.APP_CONFIG = Object.freeze(" + json.dumps({"apiBase": api_origin or ""}) + ");\n").encode()


class FrontendHandler(SimpleHTTPRequestHandler):
    """Static files with security headers, no directory listings and a generated config.js."""

    server_version = "frontend"
    sys_version = ""
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".html": "text/html; charset=utf-8",
        ".png": "image/png",
        ".svg": "image/svg+xml",
    }

    def __init__(self, *args: object, api_origin: str | None = None, **kwargs: object) -> None:
        self.api_origin = api_origin
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def end_headers(self) -> None:
        for name, value in security_headers(self.api_origin).items():
            self.send_header(name, value)
        path = self.path.split("?", 1)[0]
        # HTML and config must be revalidated so a deploy takes effect; vendor files may be cached briefly.
        cache = "public, max-age=3600" if path.startswith("/vendor/") else "no-cache"
        self.send_header("Cache-Control", cache)
        super().end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path.split("?", 1)[0] == "/config.js" and self.api_origin:
            body = config_js(self.api_origin)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/javascript; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def list_directory(self, path: str | Path) -> None:  # type: ignore[override]
        self.send_error(HTTPStatus.NOT_FOUND, "Not found")
        return None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature from base class
        log.info("%s - %s", self.address_string(), format % args)


def make_server(host: str, port: int, api_origin: str | None = None, directory: Path = FRONTEND_DIR) -> ThreadingHTTPServer:
    """Build (but do not start) the HTTP server; ``port=0`` picks a free port."""
    handler = partial(FrontendHandler, directory=str(directory), api_origin=api_origin)
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    parser.add_argument(
        "--api-origin",
        type=normalise_origin,
        default=None,
        help="origin of the backend API, e.g. http://127.0.0.1:8000 (default: same origin as the page)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (FRONTEND_DIR / "index.html").is_file():
        print(f"frontend not found at {FRONTEND_DIR}", file=sys.stderr)
        return 1
    server = make_server(args.host, args.port, args.api_origin)
    log.info("serving %s on http://%s:%d (API: %s)", FRONTEND_DIR, args.host, server.server_port,
             args.api_origin or "same origin")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
