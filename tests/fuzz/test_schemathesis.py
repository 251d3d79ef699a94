"""Property-based fuzzing of every documented route with schemathesis (v4), in-process over ASGI.

The app's own OpenAPI spec drives the generator; requests carry an admin's Bearer token so the
authenticated code paths are reached. The model is the scripted one (no weights needed).
Checks: never a 5xx, and every response conforms to its documented schema and content type.
Bounded: a few examples per operation, derandomised, with a per-example deadline.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from backend.app import create_app
from backend.settings import Settings
from tests.conftest import PASSWORD, TEST_SECRET
from tests.fakes import ScriptedProvider

# routes that end the session the fuzzer runs under (it would only see 401s afterwards)
EXCLUDED = [("DELETE", "/api/account"), ("POST", "/api/auth/logout")]
_DATA = Path(tempfile.mkdtemp(prefix="fuzz-"))
# building the app is cheap (no model, no I/O): the lifespan runs in the fixture below
APP = create_app(
    Settings(_env_file=None, data_dir=_DATA / "data", jwt_secret=TEST_SECRET, bcrypt_rounds=4, serve_frontend=False,
             log_json=False, router_use_llm=False, rate_limit_rpm=100_000, login_max_failures=100_000,
             max_upload_bytes=256 * 1024, allowed_hosts=["testserver"]),
    provider=ScriptedProvider(),
)
_HEADERS: dict[str, str] = {}

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
for _method, _path in EXCLUDED:
    schema = schema.exclude(method=_method, path=_path)


@pytest.fixture(scope="module", autouse=True)
def running_app() -> Iterator[None]:
    with TestClient(APP, raise_server_exceptions=False) as client:  # runs the lifespan: app.state.services
        APP.state.services.users.create("admin", PASSWORD, "admin")
        token = client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD}).json()["access_token"]
        _HEADERS["Authorization"] = f"Bearer {token}"
        yield
    shutil.rmtree(_DATA, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=12, deadline=10_000, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
def test_no_server_errors_and_documented_responses(case: Any) -> None:
    case.call_and_validate(
        headers=dict(_HEADERS),
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
