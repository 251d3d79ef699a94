"""All configuration in one place: environment variables and `.env`.

Every path under the data directory can be overridden on its own; by default it is
derived from ``DATA_DIR``.  Building a ``Settings`` is cheap and has no side effects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ProviderName = Literal["embedded", "ollama", "openai"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- server -------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    log_json: bool = True
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
    embedded_model_path: Path | None = None
    embedded_model_name: str | None = None  # model id shown in /v1/models; derived if unset
    embedded_n_ctx: int = 8192
    embedded_n_threads: int | None = None
    embedded_n_batch: int = 512
    embedded_chat_format: str | None = None  # None: use the GGUF's own chat template

    ollama_host: str = "http://127.0.0.1:11434"
    ollama_model: str = "qwen2.5-coder:0.5b"
    ollama_timeout_s: float = 300.0
    ollama_connect_timeout_s: float = 5.0
    ollama_num_ctx: int = 8192
    ollama_keep_alive: str = "10m"
    ollama_num_parallel: int = 1

    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
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
    # code sandbox: concurrent runs (all users, and per user), per-run cgroup, python_code switch
    python_code_enabled: bool = True
    sandbox_max_concurrent: int = 4
    sandbox_max_per_user: int = 2
    sandbox_queue_timeout_s: float = 30.0  # wait for a free run slot at most this long
    sandbox_max_processes: int = 32  # pids.max of the run's cgroup, and RLIMIT_NPROC of its uid
    sandbox_cgroup: Literal["auto", "off"] = "auto"
    sandbox_uid_base: int = 200_000  # as root, runs use private uids base … base + 8×max_concurrent

    @field_validator("cors_origins", "ssrf_allow_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

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
        ]
