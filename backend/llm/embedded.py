"""The default provider: a GGUF model run in-process by llama-cpp-python.

* Weights come from ``model_assets.ensure_model`` and are loaded lazily in ``start()`` (in a thread).
* The prompt is rendered with the GGUF's own chat template (tools included when the template
  knows them, otherwise described in the system message), then tokenized once: usage is exact.
* A ``JsonConstraint`` becomes a llama.cpp grammar (JSON, or the JSON schema's grammar), checked
  after sampling as llama.cpp's own server does (``lazy_grammar``), not over the whole vocabulary
  for every token.
* Generation runs on one dedicated worker thread (the model does one thing at a time) and pushes
  events through an asyncio queue. When the consumer goes away, a ``threading.Event`` checked
  before every sampled token (and between prompt batches) stops the work at once.
* The KV cache is kept between calls, so a repeated prefix (the system prompt) is not re-evaluated.
* Stable prompt prefixes (a mode's system prompt with its tool schemas) also keep their KV state in
  a small LRU store (``PrefixCache``): when a chat request has replaced the KV cache in between, an
  agent turn restores its prefix instead of evaluating it again, so its time-to-first-token stays
  close to plain chat's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from backend.errors import (
    BadRequestError,
    ContextLengthExceededError,
    ServiceUnavailableError,
    UpstreamError,
)
from backend.llm.base import JsonConstraint, LLMProvider
from backend.llm.model_assets import (
    CATALOGUE,
    ModelAssetError,
    ensure_model,
    locate_parts,
    model_id_for,
)
from backend.llm.types import GenerationParams, Message, StreamEvent, Usage, message_text
from backend.settings import Settings

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger("backend.llm.embedded")

_PREFILL_CHUNK = 256  # prompt tokens evaluated between two cancellation checks


class _StopWhenCancelled:
    """A llama.cpp stopping criterion: counts sampled tokens, stops once ``cancel`` is set."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.sampled = 0

    def __call__(self, _ids: Any, _logits: Any) -> bool:
        self.sampled += 1
        return self.cancel.is_set()


class _Cancelled(Exception):
    pass


#: a prefix shorter than this is cheaper to evaluate than to store and restore
PREFIX_MIN_TOKENS = 32


class PrefixCache:
    """KV state of stable prompt prefixes (sequence 0 only, no logits), least recently used out first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self.hits = 0
        self.stores = 0

    @staticmethod
    def key(tokens: list[int]) -> str:
        return hashlib.sha1(b"".join(t.to_bytes(4, "little", signed=True) for t in tokens)).hexdigest()

    @property
    def size_bytes(self) -> int:
        return sum(len(data) for _, data in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> tuple[int, bytes] | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: str, n_tokens: int, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        self._items[key] = (n_tokens, data)
        self._items.move_to_end(key)
        self.stores += 1
        while self.size_bytes > self.max_bytes:
            self._items.popitem(last=False)


def _save_kv(llama: Any) -> bytes | None:
    """The KV cells of sequence 0 (what the prompt so far left in the cache)."""
    import llama_cpp

    ctx = llama._ctx.ctx
    size = int(llama_cpp.llama_state_seq_get_size(ctx, 0))
    if size <= 0:
        return None
    buf = (ctypes.c_uint8 * size)()
    written = int(llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0))
    return bytes(buf[:written]) if 0 < written <= size else None


def _load_kv(llama: Any, data: bytes, tokens: list[int]) -> bool:
    """Put a saved prefix back as the KV cache's content; False if llama.cpp refused it."""
    import llama_cpp

    llama._ctx.kv_cache_seq_rm(-1, 0, -1)
    buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    if int(llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, buf, len(data), 0)) != len(data):
        llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        llama.n_tokens = 0
        return False
    llama.input_ids[: len(tokens)] = tokens
    llama.n_tokens = len(tokens)
    return True


_DONE = object()


def physical_cores() -> int:
    """Physical cores available to this process (llama.cpp is slower on hyper-threads)."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    with contextlib.suppress(OSError):
        phys = core = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "physical id":
                phys = value
            elif key == "core id":
                core = value
                cores.add((phys, core))
    return max(1, min(available, len(cores) or available))


# ----------------------------------------------------------------------------- message shaping
def _arguments_obj(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def _call_json(call: dict[str, Any]) -> str:
    fn = call.get("function") or call
    return json.dumps({"name": fn.get("name"), "arguments": _arguments_obj(fn.get("arguments", {}))}, ensure_ascii=False)


def tools_system_text(tools: list[dict[str, Any]]) -> str:
    """Qwen-style tool instructions, for templates that do not render tools themselves."""
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{lines}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def normalise_messages(
    messages: list[Message], *, native_tools: bool, tools: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """OpenAI messages → what a chat template expects (string content, known roles)."""
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise BadRequestError("Each message must be an object.", param=f"messages[{i}]")
        role = msg.get("role")
        text = message_text(msg.get("content"), f"messages[{i}].content")
        if role == "developer":
            role = "system"
        if role in ("system", "user"):
            out.append({"role": role, "content": text})
        elif role == "assistant":
            calls = msg.get("tool_calls") or []
            if calls and native_tools:
                shaped = [
                    {
                        "type": "function",
                        "function": {
                            "name": (c.get("function") or {}).get("name"),
                            "arguments": _arguments_obj((c.get("function") or {}).get("arguments", {})),
                        },
                    }
                    for c in calls
                ]
                out.append({"role": "assistant", "content": text, "tool_calls": shaped})
            elif calls:
                body = "\n".join(f"<tool_call>\n{_call_json(c)}\n</tool_call>" for c in calls)
                out.append({"role": "assistant", "content": (text + "\n" + body).strip()})
            else:
                out.append({"role": "assistant", "content": text})
        elif role in ("tool", "function"):
            if native_tools:
                out.append({"role": "tool", "content": text})
            else:
                out.append({"role": "user", "content": f"<tool_response>\n{text}\n</tool_response>"})
        else:
            raise BadRequestError(f"Unsupported message role '{role}'.", param=f"messages[{i}].role")
    if tools and not native_tools:
        extra = tools_system_text(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": (out[0]["content"] + "\n\n" + extra).strip()}
        else:
            out.insert(0, {"role": "system", "content": extra})
    if not out:
        raise BadRequestError("'messages' must contain at least one message.", param="messages")
    return out


@functools.lru_cache(maxsize=64)
def _grammar_text(schema_json: str | None) -> str:
    from llama_cpp import llama_grammar

    if schema_json is None:
        return str(llama_grammar.JSON_GBNF)
    try:
        return str(llama_grammar.json_schema_to_gbnf(schema_json))
    except Exception as exc:
        raise BadRequestError(
            f"This JSON schema cannot be enforced by the embedded model: {exc}",
            param="response_format",
            code="invalid_value",
        ) from exc


# ----------------------------------------------------------------------------- provider
class EmbeddedProvider(LLMProvider):
    name = "embedded"
    native_tool_calls = False
    parallel = 1

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._model_id = model_id_for(settings)
        self._llama: Llama | None = None
        self._formatter: Any = None
        self._template_tools = False
        self._path: Path | None = None
        self._load_error: str | None = None
        self._load_lock = asyncio.Lock()
        self._gen_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.n_threads = settings.embedded_n_threads or physical_cores()
        #: prompt tokens reused from the KV cache by the latest generation (not re-evaluated)
        self.last_cached_tokens = 0
        self.prefix_cache = PrefixCache(int(settings.embedded_prefix_cache_mb * 1024 * 1024))

    # ------------------------------------------------------------ lifecycle
    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    @property
    def context_window(self) -> int | None:
        return self._llama.n_ctx() if self._llama is not None else self.settings.embedded_n_ctx

    async def start(self) -> None:
        if self._llama is not None:
            return
        async with self._load_lock:
            if self._llama is None:
                try:
                    await asyncio.to_thread(self._load)
                except ModelAssetError as exc:
                    self._load_error = exc.message
                    raise
                except Exception as exc:
                    self._load_error = f"The embedded model could not be loaded: {exc}"
                    log.exception("loading the embedded model failed")
                    raise ServiceUnavailableError(self._load_error, retry_after=30) from exc

    def _load(self) -> None:
        from llama_cpp import llama_chat_format

        from backend.llm.lazy_grammar import lazy_grammar_llama_class

        path = ensure_model(self.settings)
        t0 = time.monotonic()
        llama = lazy_grammar_llama_class()(
            model_path=str(path),
            n_ctx=self.settings.embedded_n_ctx,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            n_batch=self.settings.embedded_n_batch,
            verbose=False,
        )
        fmt = self.settings.embedded_chat_format
        template = llama.metadata.get("tokenizer.chat_template")
        if fmt:
            formatter = getattr(llama_chat_format, "format_" + fmt.replace("-", "_").replace(".", "_"), None)
            if formatter is None:
                raise ModelAssetError(f"Unknown EMBEDDED_CHAT_FORMAT '{fmt}'.")
            self._formatter, self._template_tools = formatter, False
        elif template:
            eos_id, bos_id = llama.token_eos(), llama.token_bos()
            vocab = llama._model
            self._formatter = llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=vocab.token_get_text(eos_id) if eos_id != -1 else "",
                bos_token=vocab.token_get_text(bos_id) if bos_id != -1 else "",
                stop_token_ids=[eos_id],
            )
            self._template_tools = "tool_calls" in template and "tools" in template
        else:
            self._formatter, self._template_tools = llama_chat_format.format_chatml, False
        self._llama, self._path = llama, path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._load_error = None
        log.info(
            "embedded model %s loaded from %s in %.1f s (n_ctx=%d, threads=%d)",
            self._model_id,
            path.name,
            time.monotonic() - t0,
            llama.n_ctx(),
            self.n_threads,
        )

    async def aclose(self) -> None:
        llama, self._llama = self._llama, None
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if llama is not None:
            with self._gen_lock:
                llama.close()

    async def health(self) -> dict[str, Any]:
        info: dict[str, Any] = {"ok": True, "model": self._model_id, "provider": self.name, "loaded": self.loaded}
        if self._path is not None:
            info["path"] = self._path.name
        elif self.settings.embedded_model_path is not None:
            info["path"] = Path(self.settings.embedded_model_path).name
            info["ok"] = Path(self.settings.embedded_model_path).is_file()
        else:
            spec = CATALOGUE.get(self.settings.embedded_model)
            if spec is not None:
                info["path"] = spec.filename
                if not (self.settings.models_path / spec.filename).is_file():
                    try:
                        locate_parts(spec)
                    except ModelAssetError as exc:
                        info["ok"], info["error"] = False, exc.message
        if self._load_error:
            info["ok"], info["error"] = False, self._load_error
        return info

    def count_tokens(self, text: str) -> int:
        if self._llama is None:
            return super().count_tokens(text)
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # ------------------------------------------------------------ generation
    def render_prompt(self, messages: list[Message], tools: list[dict[str, Any]] | None) -> tuple[list[int], list[str]]:
        """Prompt tokens and the template's stop strings."""
        assert self._llama is not None
        native = self._template_tools
        shaped = normalise_messages(messages, native_tools=native, tools=tools)
        result = self._formatter(messages=shaped, tools=tools if (tools and native) else None)
        tokens = self._llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stops = result.stop if isinstance(result.stop, list) else ([result.stop] if result.stop else [])
        return tokens, [s for s in stops if s]

    def stable_prefix_len(self, messages: list[Message], tools: list[dict[str, Any]] | None, tokens: list[int]) -> int:
        """How many leading prompt tokens are the system turn (system prompt + tool schemas).

        That part is the same for every request of a mode, so its KV state is worth keeping.
        """
        if not self.settings.embedded_prefix_cache_mb or not messages:
            return 0
        first = messages[0]
        if not isinstance(first, dict) or first.get("role") not in ("system", "developer"):
            return 0
        try:
            head, _ = self.render_prompt([first], tools)
        except Exception:  # noqa: BLE001 - a template that needs more than a system turn: no prefix
            return 0
        n = 0
        limit = min(len(head), len(tokens) - 1)
        while n < limit and head[n] == tokens[n]:
            n += 1
        return n if n >= PREFIX_MIN_TOKENS else 0

    def _prefill(self, tokens: list[int], cancel: threading.Event, stable_prefix: int = 0) -> None:
        """Evaluate all but the last prompt token in chunks, reusing the cached prefix.

        With ``stable_prefix`` (tokens of the system turn) the prefix's KV state comes from the
        ``PrefixCache`` when the KV cache holds something else, and is stored there when new.
        """
        llama = self._llama
        assert llama is not None
        cached = llama.n_tokens
        prefix = 0
        ids = llama.input_ids
        limit = min(cached, len(tokens) - 1)
        while prefix < limit and ids[prefix] == tokens[prefix]:
            prefix += 1
        if prefix < cached:
            llama.n_tokens = prefix  # eval() drops the KV cells past n_tokens
        key = None
        if stable_prefix and prefix < stable_prefix:
            key = PrefixCache.key(tokens[:stable_prefix])
            hit = self.prefix_cache.get(key)
            if hit is not None and hit[0] == stable_prefix and _load_kv(llama, hit[1], tokens[:stable_prefix]):
                self.prefix_cache.hits += 1
                prefix, key = stable_prefix, None
            elif llama.n_tokens != prefix:  # a refused restore emptied the cache
                prefix = 0
        self.last_cached_tokens = prefix
        if key is not None:  # evaluate up to the end of the stable prefix, store it, go on
            self._eval_range(tokens, prefix, stable_prefix, cancel)
            data = _save_kv(llama)
            if data is not None:
                self.prefix_cache.put(key, stable_prefix, data)
            prefix = stable_prefix
        self._eval_range(tokens, prefix, len(tokens) - 1, cancel)

    def _eval_range(self, tokens: list[int], begin: int, end: int, cancel: threading.Event) -> None:
        assert self._llama is not None
        for start in range(begin, end, _PREFILL_CHUNK):
            if cancel.is_set():
                raise _Cancelled
            self._llama.eval(tokens[start : min(start + _PREFILL_CHUNK, end)])

    def _generate(
        self,
        messages: list[Message],
        params: GenerationParams,
        constraint: JsonConstraint | None,
        cancel: threading.Event,
    ) -> Iterator[StreamEvent]:
        from llama_cpp import StoppingCriteriaList
        from llama_cpp.llama_grammar import LlamaGrammar

        llama = self._llama
        if llama is None:
            raise ServiceUnavailableError("The embedded model is not loaded.", retry_after=10)
        tokens, template_stops = self.render_prompt(messages, params.tools)
        n_ctx = llama.n_ctx()
        if len(tokens) >= n_ctx - 1:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {n_ctx} tokens, but the messages use {len(tokens)} tokens. "
                "Shorten the conversation or the documents.",
                param="messages",
            )
        max_tokens = params.max_tokens or self.settings.default_max_tokens
        max_tokens = max(1, min(max_tokens, n_ctx - len(tokens)))
        grammar = None
        if constraint is not None:
            schema = json.dumps(constraint.schema, sort_keys=True) if constraint.schema is not None else None
            grammar = LlamaGrammar.from_string(_grammar_text(schema), verbose=False)
        stopper = _StopWhenCancelled(cancel)
        self._prefill(tokens, cancel, self.stable_prefix_len(messages, params.tools, tokens))
        s = self.settings
        chunks = llama.create_completion(
            prompt=tokens,
            max_tokens=max_tokens,
            temperature=params.temperature if params.temperature is not None else s.temperature,
            top_p=params.top_p if params.top_p is not None else s.top_p,
            top_k=params.top_k if params.top_k is not None else s.top_k,
            stop=list(params.stop or []) + template_stops,
            seed=params.seed,
            presence_penalty=params.presence_penalty or 0.0,
            frequency_penalty=params.frequency_penalty or 0.0,
            stream=True,
            grammar=grammar,
            stopping_criteria=StoppingCriteriaList([stopper]),
        )
        yield from self._completion_events(cast(Iterator[dict[str, Any]], chunks), stopper, len(tokens), max_tokens)

    def _completion_events(
        self, chunks: Iterator[dict[str, Any]], stopper: _StopWhenCancelled, prompt_tokens: int, max_tokens: int
    ) -> Iterator[StreamEvent]:
        """llama.cpp's streamed completion chunks → text events, then the finish with usage."""
        parts: list[str] = []
        finish = "stop"
        for chunk in chunks:
            if stopper.cancel.is_set():
                raise _Cancelled
            choice = chunk["choices"][0]
            text = choice.get("text") or ""
            if text:
                parts.append(text)
                yield StreamEvent(content=text)
            if choice.get("finish_reason"):
                finish = str(choice["finish_reason"])
        if stopper.cancel.is_set():
            raise _Cancelled
        # at the limit every sampled token counts; otherwise the text (without the EOS/stop) is re-tokenized
        text_tokens = self.count_tokens("".join(parts)) if parts else 0
        completion = min(stopper.sampled, max_tokens) if finish == "length" else text_tokens
        yield StreamEvent(finish_reason=finish, usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion))

    async def _stream_raw(
        self,
        messages: list[Message],
        params: GenerationParams,
        constraint: JsonConstraint | None,
    ) -> AsyncIterator[StreamEvent]:
        await self.start()
        async for ev in self._on_model_thread(lambda cancel: self._generate(messages, params, constraint, cancel)):
            yield ev

    # ------------------------------------------------------------ raw text completion (/v1/completions)
    supports_text_completion = True
    supports_suffix = True

    def fim_tokens(self) -> tuple[int, int, int] | None:
        """The GGUF's fill-in-the-middle tokens (prefix, suffix, middle), or None if it has none."""
        import llama_cpp

        assert self._llama is not None
        vocab = self._llama._model.vocab
        ids = (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab), llama_cpp.llama_vocab_fim_mid(vocab))
        return ids if all(i >= 0 for i in ids) else None

    def render_text_prompt(self, prompt: str, suffix: str | None) -> list[int]:
        """A raw prompt's tokens (special tokens in the text are honoured, as llama.cpp's server does);
        with ``suffix``, the prefix-suffix-middle order Qwen2.5-Coder and StarCoder were trained on:
        ``<|fim_prefix|>prompt<|fim_suffix|>suffix<|fim_middle|>``."""
        llama = self._llama
        assert llama is not None
        if suffix is None:
            return llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        fim = self.fim_tokens()
        if fim is None:
            raise BadRequestError(
                f"The model '{self._model_id}' has no fill-in-the-middle tokens; 'suffix' needs a code model "
                "such as Qwen2.5-Coder.",
                param="suffix",
                code="unsupported_parameter",
            )
        pre, suf, mid = fim
        bos = llama.tokenize(b"", add_bos=True, special=False)
        def body(text: str) -> list[int]:
            return llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

        return [*bos, pre, *body(prompt), suf, *body(suffix), mid]

    def _generate_text(
        self, prompt: str, params: GenerationParams, suffix: str | None, cancel: threading.Event
    ) -> Iterator[StreamEvent]:
        import numpy as np
        from llama_cpp import LogitsProcessorList, StoppingCriteriaList

        llama = self._llama
        if llama is None:
            raise ServiceUnavailableError("The embedded model is not loaded.", retry_after=10)
        tokens = self.render_text_prompt(prompt, suffix)
        n_ctx = llama.n_ctx()
        if len(tokens) >= n_ctx - 1:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {n_ctx} tokens, but the prompt uses {len(tokens)} tokens.",
                param="prompt",
            )
        max_tokens = max(1, min(params.max_tokens or self.settings.default_max_tokens, n_ctx - len(tokens)))
        fim = self.fim_tokens() if suffix is not None else None
        stopper = _StopWhenCancelled(cancel)

        def no_fim_markers(_ids: Any, logits: Any) -> Any:  # a middle never contains the FIM markers
            logits[list(fim or ())] = -np.inf
            return logits

        s = self.settings
        chunks = llama.create_completion(
            prompt=tokens,
            max_tokens=max_tokens,
            temperature=params.temperature if params.temperature is not None else s.temperature,
            top_p=params.top_p if params.top_p is not None else s.top_p,
            top_k=params.top_k if params.top_k is not None else s.top_k,
            stop=list(params.stop or []) or None,
            seed=params.seed,
            presence_penalty=params.presence_penalty or 0.0,
            frequency_penalty=params.frequency_penalty or 0.0,
            stream=True,
            stopping_criteria=StoppingCriteriaList([stopper]),
            logits_processor=LogitsProcessorList([no_fim_markers]) if fim else None,
        )
        yield from self._completion_events(cast(Iterator[dict[str, Any]], chunks), stopper, len(tokens), max_tokens)

    async def _stream_text_raw(
        self, prompt: str, params: GenerationParams, suffix: str | None
    ) -> AsyncIterator[StreamEvent]:
        await self.start()
        async for ev in self._on_model_thread(lambda cancel: self._generate_text(prompt, params, suffix, cancel)):
            yield ev

    async def _on_model_thread(
        self, produce: Callable[[threading.Event], Iterator[StreamEvent]]
    ) -> AsyncIterator[StreamEvent]:
        """Run ``produce(cancel)`` (an event iterator) on the model's thread under the generation
        lock; events arrive through a queue, and leaving the loop stops the work at the next token.
        The one worker loop of chat and text generation."""
        executor = self._executor
        if executor is None:
            raise ServiceUnavailableError("The embedded model is shutting down.", retry_after=10)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamEvent | BaseException | object] = asyncio.Queue()
        cancel = threading.Event()

        def put(item: StreamEvent | BaseException | object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                with self._gen_lock:
                    if cancel.is_set():
                        return
                    for ev in produce(cancel):
                        put(ev)
            except _Cancelled:
                log.debug("generation cancelled")
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                put(exc)
            finally:
                put(_DONE)

        future = executor.submit(work)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, (BadRequestError, ServiceUnavailableError, UpstreamError)):
                    raise item
                if isinstance(item, ValueError) and "context" in str(item).lower():
                    raise ContextLengthExceededError(str(item), param="messages") from item
                if isinstance(item, BaseException):
                    raise UpstreamError(f"The embedded model failed: {item}") from item
                if isinstance(item, StreamEvent):
                    yield item
        finally:
            cancel.set()
            if not future.done():
                log.debug("consumer left; stopping generation")
