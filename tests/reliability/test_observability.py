"""Observability: Prometheus /metrics (no user ids in any label), JSON logs carrying the request id
that the X-Request-Id header returns, and the audit log of logins and tool calls."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PASSWORD, start_server, stop_server
from tests.fakes import ScriptedProvider


def _samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def _total(samples: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_after_traffic_without_user_identifiers(api):
    conv = api.client.post("/api/conversations", json={}, headers=api.auth("bob")).json()["id"]
    body = {"model": "scripted-model:chat", "conversation_id": conv, "messages": [{"role": "user", "content": "hi"}]}
    assert api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob")).status_code == 200
    assert api.client.post("/v1/chat/completions", json=body | {"stream": True}, headers=api.auth("bob")).status_code == 200
    call = json.dumps({"name": "math_calc", "arguments": {"expression": "6*7"}})
    api.provider.outputs = [call, "The answer is 42."]
    react = api.client.post("/v1/chat/completions", headers=api.auth("bob"),
                            json={"model": "scripted-model:react", "messages": [{"role": "user", "content": "what is 6*7?"}]})
    assert react.status_code == 200, react.text
    api.client.post("/api/auth/login", json={"username": "bob", "password": "wrong-password"})
    api.client.get(f"/api/conversations/{conv}", headers=api.auth("bob"))

    r = api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    samples = _samples(text)  # parses as the Prometheus text format
    assert _total(samples, "http_requests_total", route="/v1/chat/completions", method="POST", status="200") >= 3
    assert _total(samples, "http_requests_total", route="/api/auth/login", status="401") == 1
    assert _total(samples, "http_request_duration_seconds_count", route="/v1/chat/completions") >= 3
    assert "llm_queue_depth" in samples and "llm_active_generations" in samples
    assert _total(samples, "llm_queue_wait_seconds_count") >= 3
    assert _total(samples, "llm_prompt_tokens_total") > 0 and _total(samples, "llm_completion_tokens_total") > 0
    assert _total(samples, "llm_completions_total", outcome="ok") >= 1
    assert _total(samples, "agent_tool_calls_total", tool="math_calc") >= 1
    assert _total(samples, "llm_time_to_first_token_seconds_count") >= 1
    # no user identifiers and no raw ids anywhere: routes are templates, never paths
    for secret in ("bob", "alice", api.users["bob"]["id"], api.users["alice"]["id"], conv):
        assert secret not in text, secret
    assert "/api/conversations/{conversation_id}" in text


def test_request_ids_in_headers_and_json_logs(tmp_path: Path, fake_upstream):
    server = start_server(tmp_path / "data", LLM_PROVIDER="openai", OPENAI_BASE_URL=fake_upstream.base_url,
                          OPENAI_MODEL="fake-model", ROUTER_USE_LLM="false", LOG_JSON="true")
    try:
        headers = {"Authorization": f"Bearer {server.tokens['bob']}"}
        body = {"model": "fake-model:chat", "messages": [{"role": "user", "content": "hi"}]}
        mine = httpx.post(server.v1 + "/chat/completions", json=body, headers=headers | {"X-Request-Id": "client-req-0001"})
        assert mine.status_code == 200 and mine.headers["x-request-id"] == "client-req-0001"
        generated = httpx.get(server.base_url + "/api/auth/me", headers=headers)
        rid = generated.headers["x-request-id"]
        assert rid.startswith("req_") and len(rid) > 12
        injected = httpx.get(server.base_url + "/health", headers={"X-Request-Id": "evil\tid {\"level\": \"critical\"}"})
        assert injected.headers["x-request-id"].startswith("req_")  # not echoed into logs or headers
        failed = httpx.post(server.base_url + "/api/auth/login", json={"username": "bob", "password": "nope-nope"})
        assert failed.status_code == 401
        time.sleep(0.5)
        lines = [ln for ln in server.log_path.read_text().splitlines() if ln.strip()]
        records = [json.loads(ln) for ln in lines]  # every line is JSON
        assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
        by_id = [r for r in records if r.get("request_id") == "client-req-0001"]
        access = [r for r in by_id if r["logger"] == "backend.access"]
        assert access and access[0]["status"] == 200 and access[0]["route"] == "/v1/chat/completions"
        assert isinstance(access[0]["duration_ms"], float)
        assert any(r.get("request_id") == rid for r in records)
        assert any(r.get("request_id") == failed.headers["x-request-id"] and r.get("status") == 401 for r in records)
        assert PASSWORD not in server.log_path.read_text() and "nope-nope" not in server.log_path.read_text()
        assert server.tokens["bob"] not in server.log_path.read_text()
    finally:
        stop_server(server)


def test_audit_log_records_logins_and_tool_calls(threaded_app):
    call = json.dumps({"name": "math_calc", "arguments": {"expression": "2+2"}})
    provider = ScriptedProvider([call, "It is 4."])
    with threaded_app(provider) as app:
        httpx.post(app.base_url + "/api/auth/login", json={"username": "bob", "password": "bad-password"})
        httpx.post(app.base_url + "/api/auth/login", json={"username": "ghost", "password": "bad-password"})
        r = httpx.post(app.base_url + "/v1/chat/completions", headers=app.auth("bob") | {"X-Request-Id": "audit-req-0001"},
                       json={"model": "scripted-model:react", "messages": [{"role": "user", "content": "2+2?"}]}, timeout=60)
        assert r.status_code == 200, r.text
        path = app.settings.audit_log_path
        assert path == app.settings.data_dir / "logs" / "audit.jsonl"
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        logins = [e for e in entries if e["event"] == "login"]
        assert {e["user"] for e in logins} >= {app.user_ids["alice"], app.user_ids["bob"], app.user_ids["carol"]}
        assert all(e.get("ip") for e in logins)
        failed = [e for e in entries if e["event"] == "login_failed"]
        assert {e["username"] for e in failed} == {"bob", "ghost"}
        tools = [e for e in entries if e["event"] == "tool_call"]
        assert tools and tools[0]["tool"] == "math_calc" and tools[0]["user"] == app.user_ids["bob"]
        assert tools[0]["request_id"] == "audit-req-0001"
        assert all(isinstance(e["ts"], float | int) for e in entries)
        assert "bad-password" not in path.read_text() and "password_hash" not in path.read_text()
        assert oct(path.stat().st_mode & 0o777) == "0o600"
