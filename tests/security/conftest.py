"""The security tests reuse the reliability harnesses (in-process app, real uvicorn on 127.0.0.1)."""

from tests.reliability.conftest import threaded_app  # noqa: F401 - a fixture, re-exported
