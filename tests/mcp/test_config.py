"""MCP_SERVERS: parsed from JSON, checked with a clear message, secrets kept out of reprs."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from backend.mcp.bridge import input_schema, tool_name
from backend.settings import Settings


def settings_from_env(monkeypatch, servers) -> Settings:  # noqa: ANN001
    monkeypatch.setenv("MCP_SERVERS", json.dumps(servers))
    return Settings(_env_file=None)


def test_servers_parse_from_the_environment_and_hide_secrets(monkeypatch):
    s = settings_from_env(monkeypatch, [
        {"name": "files", "transport": "stdio", "command": "npx", "args": ["-y", "srv"], "env": {"TOKEN": "s3cret"},
         "tools": ["read"]},
        {"name": "web", "transport": "http", "url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer hdr-secret"}},
    ])
    files, web = s.mcp_servers
    assert files.command == "npx" and files.allows("read") and not files.allows("write")
    assert web.allows("anything") and web.allow_private_network is False and web.call_timeout_s == 30
    assert web.headers["Authorization"].get_secret_value() == "Bearer hdr-secret"
    assert "s3cret" not in repr(s) and "hdr-secret" not in repr(s)


@pytest.mark.parametrize(("server", "message"), [
    ({"name": "a", "transport": "stdio"}, "needs a 'command'"),
    ({"name": "a", "transport": "http"}, "needs a 'url'"),
    ({"name": "a", "transport": "http", "url": "file:///etc/passwd"}, "scheme 'file' is not allowed"),
    ({"name": "a", "transport": "http", "url": "http://user:pw@example.com/mcp"}, "credentials in URLs"),
    ({"name": "bad name!", "transport": "stdio", "command": "x"}, "name"),
    ({"name": "a", "transport": "sse", "url": "https://example.com"}, "transport"),
    ({"name": "a", "transport": "stdio", "command": "x", "call_timeout_s": 0}, "call_timeout_s"),
    ({"name": "a", "transport": "stdio", "command": "x", "typo": 1}, "typo"),
])
def test_bad_entries_are_refused_with_a_clear_message(monkeypatch, server, message):
    with pytest.raises(ValidationError) as info:
        settings_from_env(monkeypatch, [server])
    assert message in str(info.value)


def test_names_must_be_unique(monkeypatch):
    with pytest.raises(ValidationError, match="unique"):
        settings_from_env(monkeypatch, [{"name": "a", "transport": "stdio", "command": "x"},
                                        {"name": "A", "transport": "stdio", "command": "y"}])


def test_tool_names_are_valid_function_names():
    assert tool_name("files", "read_file") == "mcp_files_read_file"
    assert tool_name("gh", "issues/list.all") == "mcp_gh_issues_list_all"
    assert len(tool_name("s", "x" * 200)) == 64
    assert input_schema(None) == {"type": "object", "properties": {}}
