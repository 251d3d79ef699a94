"""One attached MCP server's configuration (an entry of ``Settings.mcp_servers`` / ``MCP_SERVERS``).

    MCP_SERVERS='[{"name": "files", "transport": "stdio", "command": "npx",
                   "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv/share"],
                   "tools": ["read_file", "list_directory"]},
                  {"name": "issues", "transport": "http", "url": "https://mcp.example.com/mcp",
                   "headers": {"Authorization": "Bearer ..."}, "call_timeout_s": 20}]'

Secrets (header values, environment values) are ``SecretStr``: never shown in logs or reprs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from backend.net.ssrf import SSRFError, parse_url


class McpServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: short id; the server's tools are offered to the model as ``mcp_<name>_<tool>``
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$")
    transport: Literal["stdio", "http"]
    # stdio: the command is spawned with only these env variables on top of a minimal safe environment
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, SecretStr] = Field(default_factory=dict)
    cwd: Path | None = None
    # http (streamable HTTP)
    url: str | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    #: the SSRF guard refuses private/loopback addresses; set true to allow them for this server only
    allow_private_network: bool = False
    #: allow-list of the server's tool names (its own names, not ours); None = every tool it lists
    tools: list[str] | None = None
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    call_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    enabled: bool = True

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServerConfig:
        if self.transport == "stdio":
            if not self.command:
                raise ValueError(f"MCP server {self.name!r}: transport 'stdio' needs a 'command'")
            if self.url:
                raise ValueError(f"MCP server {self.name!r}: 'url' is for transport 'http'")
        else:
            if not self.url:
                raise ValueError(f"MCP server {self.name!r}: transport 'http' needs a 'url'")
            if self.command:
                raise ValueError(f"MCP server {self.name!r}: 'command' is for transport 'stdio'")
            try:
                parse_url(self.url)
            except SSRFError as exc:
                raise ValueError(f"MCP server {self.name!r}: bad url: {exc}") from None
        return self

    def allows(self, tool_name: str) -> bool:
        return self.tools is None or tool_name in self.tools
