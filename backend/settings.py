"""All configuration in one place: environment variables and `.env`.

Every path under the data directory can be overridden on its own; by default it is
derived from ``DATA_DIR``.  Building a ``Settings`` is cheap and has no side effects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backend.mcp.config import McpServerConfig

ProviderName = Literal["embedded", "ollama", "openai"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- server -------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    log_json: bool | None = None  # None: JSON lines unless stderr is a terminal (then plain text)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    serve_frontend: bool = True
    frontend_dir: Path = Path(__file__).resolve().parent.parent / "frontend"

    # --- paths (all derived from data_dir unless set) -----------------------
    data_dir: Path = Path("data")
    users_file: Path | None = None
    conversations_dir: Path | None = None
    keys_file: Path | None = None
    secrets_dir: Path | None = None
    uploads_dir: Path | None = None
    indexes_dir: Path | None = None
    models_dir: Path | None = None
    audit_log_file: Path | None = None
    jobs_dir: Path | None = None

    # --- model provider -----------------------------------------------------
    llm_provider: ProviderName = "embedded"
    embedded_model: Literal["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"] = (
        "qwen2.5-coder-0.5b"
    )
    # agent steps (code / ReAct / plan-and-execute) run on this model; chat and routing on EMBEDDED_MODEL.
    # "none" (or the chat model's key): everything on EMBEDDED_MODEL. Ignored when its packages are not
    # installed (agents then use the chat model; /health/detailed says so). Chosen by measurement: README.
    embedded_agent_model: Literal["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"] | None = (
        "qwen2.5-coder-1.5b"
    )
    embedded_model_path: Path | None = None
    embedded_model_name: str | None = None  # model id shown in /v1/models; derived if unset
    embedded_n_ctx: int = 8192
    embedded_n_threads: int | None = None
    embedded_n_batch: int = 512
    embedded_chat_format: str | None = None  # None: use the GGUF's own chat template
    # --- embedded prefix cache (agents): KV state of stable system prompts kept across requests; 0 = off
    embedded_prefix_cache_mb: int = 128

    ollama_host: str = "http://127.0.0.1:11434"
    ollama_model: str = "qwen2.5-coder:0.5b"
    ollama_agent_model: str | None = None  # agent steps on another Ollama model (unset: OLLAMA_MODEL)
    ollama_timeout_s: float = 300.0
    ollama_connect_timeout_s: float = 5.0
    ollama_num_ctx: int = 8192
    ollama_keep_alive: str = "10m"
    ollama_num_parallel: int = 1

    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    openai_agent_model: str | None = None  # agent steps on another upstream model (unset: OPENAI_MODEL)
    openai_timeout_s: float = 300.0
    openai_parallel: int = 4

    # default sampling, overridable per request
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    default_max_tokens: int = 1024
    first_byte_timeout_s: float = 120.0
    stream_idle_timeout_s: float = 60.0

    # --- auth ----------------------------------------------------------------
    jwt_secret: SecretStr | None = None  # generated once and stored 0600 if unset
    jwt_expiry_minutes: int = 60
    allow_registration: bool = False
    allow_anonymous: bool = False
    login_max_failures: int = 5
    login_window_s: int = 300
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)

    # --- limits and fairness ------------------------------------------------
    max_body_bytes: int = 2 * 1024 * 1024
    max_messages: int = 512
    max_message_chars: int = 200_000
    max_json_depth: int = 32
    max_upload_bytes: int = 25 * 1024 * 1024
    rate_limit_rpm: int = 120
    rate_limit_tpm: int = 200_000
    rate_limit_admin_exempt: bool = True
    queue_max_size: int = 64
    queue_max_per_user: int = 0  # requests one user may have waiting; 0 = a quarter of queue_max_size
    queue_timeout_s: float = 300.0
    keepalive_interval_s: float = 10.0

    # --- agents ---------------------------------------------------------------
    agent_max_iterations: int = 5
    plan_max_replans: int = 3
    router_use_llm: bool = True
    # ReAct: "native" = tools passed to the model (OpenAI tool calls / Qwen <tool_call>), with the
    # text format accepted as a fallback; "text" = the classic Thought/Action/Observation prompt
    agent_tool_style: Literal["native", "text"] = "native"
    plan_max_parallel_tools: int = 4

    # --- tools ------------------------------------------------------------------
    tavily_api_key: SecretStr | None = None
    tavily_base_url: str = "https://api.tavily.com"
    wikipedia_api_url: str = "https://en.wikipedia.org/w/api.php"
    weather_geocoding_url: str = "https://geocoding-api.open-meteo.com/v1/search"
    weather_forecast_url: str = "https://api.open-meteo.com/v1/forecast"
    tool_http_timeout_s: float = 15.0
    # hosts allowed even though they resolve to private/loopback addresses (tests only)
    ssrf_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    sql_database_path: Path | None = None
    sql_timeout_s: float = 2.0
    sql_max_rows: int = 100
    sandbox_timeout_s: float = 10.0
    sandbox_memory_mb: int = 256
    sandbox_max_output_bytes: int = 16_384

    # --- RAG ----------------------------------------------------------------------
    chunk_size: int = 1000
    chunk_overlap: int = 200
    embedding_backend: Literal["onnx", "sentence-transformers", "ollama"] = "onnx"
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_batch_size: int = 64
    vector_store: Literal["faiss", "chroma"] = "faiss"
    chroma_host: str | None = None
    chroma_port: int = 8000
    rag_top_k: int = 5
    max_pdf_pages: int = 2000
    parse_timeout_s: float = 120.0
    max_docx_uncompressed_bytes: int = 200 * 1024 * 1024
    rag_rrf_k: int = 60  # reciprocal-rank fusion constant
    rag_dense_weight: float = 1.0  # weights of the dense and BM25 rankings in the fusion
    rag_bm25_weight: float = 1.0
    rag_candidates: int = 50  # ranked candidates taken from each retriever before fusion
    rag_max_files_per_upload: int = 20

    # --- /v1/embeddings and /v1/completions (embeddings API, text completions with FIM) ----------
    embeddings_max_inputs: int = 256  # texts one /v1/embeddings request may carry
    completions_max_prompts: int = 8  # prompts one /v1/completions request may carry
    completions_default_max_tokens: int = 16  # OpenAI's default for /v1/completions
    fim_syntax_attempts: int = 3  # generations tried before check_syntax gives up (422)

    # --- Responses API (/v1/responses; helper E) ------------------------------------
    responses_dir: Path | None = None
    responses_max_per_user: int = Field(default=500, ge=1)  # stored responses; beyond it the oldest is evicted
    responses_max_input_items: int = Field(default=512, ge=1)  # items in one request's `input`

    # --- conversations page (issue 16, helper H): search bound, per-user usage counters --------
    conversation_search_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)  # stored JSON one search may read
    conversation_search_per_user: int = Field(default=2, ge=1)  # searches one user may run at once; more get 429
    usage_dir: Path | None = None  # per-user request/token counters (default data/usage)

    # --- MCP (issue 13): attached MCP servers' tools, and our tools served at /mcp ------------
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)  # JSON list in MCP_SERVERS
    mcp_max_result_chars: int = 16_000  # an MCP tool result is cut to this many characters
    mcp_ping_interval_s: float = 30.0  # how often a connected server is checked (ping)
    mcp_reconnect_min_s: float = 2.0  # back-off before reconnecting a server that is down ...
    mcp_reconnect_max_s: float = 120.0  # ... doubling up to this
    mcp_server_enabled: bool = True  # serve our tools at /mcp (same bearer tokens / API keys as /v1)
    mcp_server_tools: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["rag_retrieval", "math_calc", "python_code", "data_analysis", "sql_query",
                                 "wikipedia", "weather", "web_search"]
    )

    @field_validator("mcp_servers")
    @classmethod
    def _unique_mcp_names(cls, value: list[McpServerConfig]) -> list[McpServerConfig]:
        names = [s.name.lower() for s in value]
        if len(names) != len(set(names)):
            raise ValueError("MCP server names must be unique")
        return value

    # --- resource bounds: SQL tool, ingestion, sandbox (hardening round 2, items 2/3/6) ---------
    # SQL worker process: the largest string/blob a query may build, what comes back, SQLite heap
    sql_max_value_bytes: int = 1_000_000
    sql_max_result_bytes: int = 65_536  # rendered rows handed back to the agent
    sql_max_scan_bytes: int = 16 * 1024 * 1024  # bytes of values fetched before the result is cut
    sql_heap_mb: int = 64  # PRAGMA hard_heap_limit inside the worker
    sql_memory_mb: int = 256  # RLIMIT_AS of the worker process
    # ingestion quotas per user (0 = unlimited) and rate limits (per minute)
    rag_max_documents_per_user: int = 500
    rag_max_bytes_per_user: int = 500 * 1024 * 1024
    rag_max_jobs_per_user: int = 4  # async ingestion jobs queued or running
    rag_upload_rpm: int = 20
    rag_search_rpm: int = 120
    rag_max_chars_per_document: int = 5_000_000  # extracted text, capped inside the parse worker
    rag_max_chunks_per_document: int = 10_000
    rag_ingest_workers: int = 2  # dedicated threads for parsing/embedding uploads
    rag_ingest_queue_max: int = 32  # ingestions waiting or running, all users (503 beyond; 0 = no cap)
    rag_finished_jobs_kept: int = 50  # finished async jobs kept in memory per user (all stay on disk)
    # RAG speed (issue 15): ONNX threads (0 = the cores this process may use), padded tokens per
    # embedding batch, and the size from which a user's FAISS index is IVF (approximate) instead of exact
    embedding_threads: int = 0
    embedding_token_budget: int = 512
    # int8: the MiniLM graph rewritten once to int8 matmuls + fused attention (cached in models/embeddings);
    # fp32: the packaged graph as shipped (vectors identical to before issue 15)
    embedding_precision: Literal["int8", "fp32"] = "int8"
    rag_ann_min_vectors: int = 50_000  # 0 = always exact
    # code sandbox: concurrent runs (all users, and per user), per-run cgroup, python_code switch
    python_code_enabled: bool = True
    sandbox_max_concurrent: int = 4
    sandbox_max_per_user: int = 2
    sandbox_queue_timeout_s: float = 30.0  # wait for a free run slot at most this long
    sandbox_max_processes: int = 32  # pids.max of the run's cgroup, and RLIMIT_NPROC of its uid
    sandbox_cgroup: Literal["auto", "off"] = "auto"
    sandbox_uid_base: int = 200_000  # as root, runs use private uids base … base + 8×max_concurrent
    # --- code agent: server tools callable from the sandboxed program (agents round 3, issue 10) ---
    code_tools_enabled: bool = True  # sql()/search_documents()/calc() inside the code agent's program
    code_tool_max_calls: int = Field(default=16, ge=0)  # tool calls one program run may make
    code_tool_max_request_bytes: int = Field(default=16_384, ge=256)  # one JSON request line
    code_tool_max_reply_bytes: int = Field(default=32_768, ge=256)  # one JSON reply line (< a pipe buffer)
    code_tool_call_timeout_s: float = Field(default=30.0, gt=0)  # one call
    code_tool_total_s: float = Field(default=60.0, gt=0)  # all calls of a run (added to its wall clock)

    # --- security boundary (hardening round 2: hosts, origins, keys, throttles, metrics) ---------
    # Host names accepted besides localhost, 127.0.0.1 and [::1] (the DNS-rebinding guard): the
    # names a browser or proxy uses to reach this server, e.g. "chat.example.org"
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # addresses (or networks) whose X-Forwarded-For is believed: the reverse proxy; none by default, never "*"
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_tokens_limit: int = Field(default=32_768, ge=1)  # ceiling on max_tokens / max_completion_tokens
    metrics_token: SecretStr | None = None  # if set, GET /metrics needs "Authorization: Bearer <token>"
    health_cache_s: float = Field(default=10.0, ge=0)  # /health/detailed and /metrics reuse one upstream probe
    login_throttle_max_keys: int = Field(default=10_000, ge=100)  # usernames/IPs the login throttle remembers
    registration_max_per_ip: int = Field(default=5, ge=1)  # self-registrations per client IP per window
    registration_window_s: int = Field(default=3600, ge=1)
    api_key_max_days: int = Field(default=0, ge=0)  # 0: keys may be created without expiry
    # sha256 of the GGUF at EMBEDDED_MODEL_PATH (a catalogue model's own digest is known already)
    embedded_model_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")

    @field_validator("cors_origins", "ssrf_allow_hosts", "mcp_server_tools", "allowed_hosts", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("embedded_agent_model", "ollama_agent_model", "openai_agent_model", mode="before")
    @classmethod
    def _none_word(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "same"):
            return None
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _no_wildcard_proxy(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("FORWARDED_ALLOW_IPS cannot be '*': name the reverse proxy's address (or network)")
        return value

    # --- scale-out (issue 15 item 4): shared limits/throttles/revocations/queue places/job status --
    # unset: each process keeps them in memory (one server); set: every replica shares them in Redis
    redis_url: SecretStr | None = None  # e.g. redis://redis:6379/0 (may carry a password)
    redis_key_prefix: str = "agent"  # keys are "<prefix>:..." (several deployments may share one Redis)
    redis_timeout_s: float = Field(default=0.5, gt=0)  # connect/read timeout of one Redis call
    redis_retry_s: float = Field(default=2.0, ge=0)  # after a failure, 503 at once for this long

    # --- derived paths ---------------------------------------------------------
    def _under_data(self, override: Path | None, *parts: str) -> Path:
        return Path(override) if override is not None else self.data_dir.joinpath(*parts)

    @property
    def users_path(self) -> Path:
        return self._under_data(self.users_file, "users", "users.json")

    @property
    def conversations_path(self) -> Path:
        return self._under_data(self.conversations_dir, "conversations")

    @property
    def keys_path(self) -> Path:
        return self._under_data(self.keys_file, "users", "api_keys.json")

    @property
    def secrets_path(self) -> Path:
        return self._under_data(self.secrets_dir, "secrets")

    @property
    def uploads_path(self) -> Path:
        return self._under_data(self.uploads_dir, "uploads")

    @property
    def indexes_path(self) -> Path:
        return self._under_data(self.indexes_dir, "indexes")

    @property
    def models_path(self) -> Path:
        return self._under_data(self.models_dir, "models")

    @property
    def audit_log_path(self) -> Path:
        return self._under_data(self.audit_log_file, "logs", "audit.jsonl")

    @property
    def jobs_path(self) -> Path:
        return self._under_data(self.jobs_dir, "jobs")

    @property
    def responses_path(self) -> Path:
        return self._under_data(self.responses_dir, "responses")

    @property
    def usage_path(self) -> Path:
        return self._under_data(self.usage_dir, "usage")

    def state_dirs(self) -> list[Path]:
        """Directories that must exist before the server accepts requests."""
        return [
            self.data_dir,
            self.users_path.parent,
            self.conversations_path,
            self.keys_path.parent,
            self.secrets_path,
            self.uploads_path,
            self.indexes_path,
            self.models_path,
            self.audit_log_path.parent,
            self.jobs_path,
            self.responses_path,
        ]
