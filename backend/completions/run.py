"""One ``/v1/completions`` run: checks that fail fast in ``prepare()``, then typed events.

Each prompt is one choice, generated through the same fair scheduler, timeouts and rate limit
as chat. With ``suffix`` the middle is line-buffered and ends where the model repeats the
suffix; with ``check_syntax="python"`` a choice's text is only released once
``prompt + text + suffix`` parses (trimmed at a line boundary, or generated again), so a 200
answer always parses and an attempt budget spent is a 422.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from backend.chat.schemas import stop_sequences
from backend.completions.fim import MAX_CHECKED_CHARS, MiddleStream, fit_python
from backend.completions.schemas import CompletionRequest
from backend.errors import BadRequestError, ContextLengthExceededError, UnprocessableError
from backend.llm.scheduled import ScheduledProvider
from backend.llm.types import GenerationParams, Usage
from backend.modes import Mode, parse_model_id
from backend.ratelimit import enforce_user_limit
from backend.services import Principal, Services

RETRY_TEMPERATURE = 0.8  # a greedy first try that failed the check is retried with sampling


@dataclass
class TextDelta:
    index: int
    text: str


@dataclass
class ChoiceEnd:
    index: int
    finish_reason: str


@dataclass
class CompletionDone:
    """Last: every choice has ended."""


CompletionEvent = TextDelta | ChoiceEnd | CompletionDone


@dataclass
class ChoiceResult:
    index: int
    text: str = ""
    finish_reason: str = "stop"
    attempts: int = 0
    trimmed_chars: int = 0


@dataclass
class _Attempt:
    text: str
    finish_reason: str
    usage: Usage


class CompletionRun:
    def __init__(self, services: Services, principal: Principal, req: CompletionRequest) -> None:
        self.services = services
        self.settings = services.settings
        self.principal = principal
        self.req = req
        self.id = "cmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.prompts: list[str] = []
        self.params = GenerationParams()
        self.usage = Usage()
        self.choices: list[ChoiceResult] = []
        self.rate_headers: dict[str, str] = {}
        self.base_model = ""

    # ------------------------------------------------------------------ prepare
    def prepare(self) -> None:
        req, settings, provider = self.req, self.settings, self.services.provider
        for name, value, ok in (
            ("n", req.n, req.n in (None, 1)),
            ("best_of", req.best_of, req.best_of in (None, 1)),
            ("logprobs", req.logprobs, req.logprobs is None),
            ("logit_bias", req.logit_bias, not req.logit_bias),
        ):
            if not ok:
                raise BadRequestError(
                    f"'{name}'={value!r} is not supported by this server (n and best_of must be 1; "
                    "logprobs and logit_bias are not offered).",
                    param=name,
                    code="unsupported_value",
                )
        if req.echo and req.suffix is not None:
            raise BadRequestError("'echo' cannot be combined with 'suffix'.", param="echo", code="unsupported_value")
        self.prompts = self._prompts(req.prompt)
        if req.check_syntax and max(len(p) for p in self.prompts) + len(req.suffix or "") > MAX_CHECKED_CHARS:
            raise BadRequestError(
                f"check_syntax parses prompt + suffix up to {MAX_CHECKED_CHARS} characters; send less context.",
                param="check_syntax",
                code="too_large",
            )
        base, mode = parse_model_id(req.model, [provider.model_id])
        if mode not in (Mode.AUTO, Mode.CHAT):
            raise BadRequestError(
                f"'{req.model}' is an agent mode; /v1/completions takes the base model id '{base}'.",
                param="model",
                code="invalid_value",
            )
        self.base_model = base
        if not provider.supports_text_completion:
            raise BadRequestError(
                f"The '{provider.name}' model backend does not offer raw text completions; use /v1/chat/completions.",
                param="prompt",
                code="unsupported_endpoint",
            )
        if req.suffix is not None and not provider.supports_suffix:
            raise BadRequestError(
                f"The '{provider.name}' model backend does not support 'suffix' (fill-in-the-middle).",
                param="suffix",
                code="unsupported_parameter",
            )
        max_tokens = req.max_tokens or settings.completions_default_max_tokens
        self.params = GenerationParams(
            temperature=req.temperature if req.temperature is not None else settings.temperature,
            top_p=req.top_p if req.top_p is not None else settings.top_p,
            top_k=settings.top_k,
            max_tokens=max_tokens,
            stop=stop_sequences(req.stop),
            seed=req.seed,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
        )
        estimate = self._check_context(max_tokens)
        self.rate_headers = enforce_user_limit(self.services, self.principal, estimate)

    def _prompts(self, prompt: object) -> list[str]:
        limit = self.settings.completions_max_prompts
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = list(prompt)
        elif isinstance(prompt, list) and prompt and all(
            isinstance(p, int) or (isinstance(p, list) and all(isinstance(t, int) for t in p)) for p in prompt
        ):
            raise BadRequestError(
                "Token-array prompts are not supported: send the prompt as text.", param="prompt", code="unsupported_value"
            )
        else:
            raise BadRequestError("'prompt' must be a string or a non-empty list of strings.", param="prompt", code="invalid_value")
        if len(prompts) > limit:
            raise BadRequestError(f"At most {limit} prompts per request.", param="prompt", code="too_many_prompts")
        if self.req.suffix is None:
            for i, p in enumerate(prompts):
                if not p:
                    raise BadRequestError("The prompt must not be empty.", param=f"prompt[{i}]" if len(prompts) > 1 else "prompt")
        return prompts

    def _check_context(self, max_tokens: int) -> int:
        provider = self.services.provider
        text = "".join(self.prompts) + (self.req.suffix or "") * len(self.prompts)
        tokens = provider.count_tokens(text) if len(text) < 200_000 else len(text) // 3
        window = provider.context_window
        longest = max(provider.count_tokens(p + (self.req.suffix or "")) for p in self.prompts) if len(text) < 200_000 else tokens
        if window and longest + min(max_tokens, window // 2) > window:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {window} tokens, but the prompt uses {longest} tokens "
                f"(plus {max_tokens} for the completion). Shorten the prompt or suffix.",
                param="prompt",
            )
        return tokens

    # ------------------------------------------------------------------ run
    def _provider(self) -> ScheduledProvider:
        return self.services.scheduled_provider(self.principal.user_id)

    async def events(self) -> AsyncIterator[CompletionEvent]:
        for index, prompt in enumerate(self.prompts):
            choice = ChoiceResult(index)
            self.choices.append(choice)
            if self.req.echo:
                choice.text = prompt
                yield TextDelta(index, prompt)
            if self.req.check_syntax:
                async for ev in self._checked(prompt, choice):
                    yield ev
            else:
                async for ev in self._streamed(prompt, choice):
                    yield ev
            yield ChoiceEnd(index, choice.finish_reason)
        yield CompletionDone()

    async def _streamed(self, prompt: str, choice: ChoiceResult) -> AsyncIterator[TextDelta]:
        choice.attempts = 1
        middle = MiddleStream(self.req.suffix) if self.req.suffix is not None else None
        agen = self._provider().stream_text(prompt, self.params, suffix=self.req.suffix)
        try:
            async for ev in agen:
                if ev.content:
                    out = middle.feed(ev.content) if middle is not None else ev.content
                    if out:
                        choice.text += out
                        yield TextDelta(choice.index, out)
                    if middle is not None and middle.reached_suffix:
                        choice.finish_reason = "stop"
                        self._count(self._estimate(prompt, choice.text))
                        return  # closing the generator stops the generation
                if ev.finish_reason:
                    choice.finish_reason = "length" if ev.finish_reason == "length" else "stop"
                if ev.usage:
                    self._count(ev.usage)
        finally:
            await agen.aclose()
        if middle is not None and (rest := middle.close()):
            choice.text += rest
            yield TextDelta(choice.index, rest)

    async def _generate(self, prompt: str, params: GenerationParams) -> _Attempt:
        middle = MiddleStream(self.req.suffix) if self.req.suffix is not None else None
        parts: list[str] = []
        finish, usage = "stop", Usage()
        agen = self._provider().stream_text(prompt, params, suffix=self.req.suffix)
        try:
            async for ev in agen:
                if ev.content:
                    parts.append(middle.feed(ev.content) if middle is not None else ev.content)
                    if middle is not None and middle.reached_suffix:
                        text = "".join(parts)
                        return _Attempt(text, "stop", self._estimate(prompt, text))
                if ev.finish_reason:
                    finish = "length" if ev.finish_reason == "length" else "stop"
                if ev.usage:
                    usage = ev.usage
        finally:
            await agen.aclose()
        if middle is not None:
            parts.append(middle.close())
        return _Attempt("".join(parts), finish, usage)

    async def _checked(self, prompt: str, choice: ChoiceResult) -> AsyncIterator[TextDelta]:
        """Generate until a middle fits; one that fits only once cut to nothing is kept as a
        fallback while attempts remain (a fuller completion may still come)."""
        suffix = self.req.suffix or ""
        params = self.params
        best: tuple[str, _Attempt, int] | None = None
        for attempt in range(1, self.settings.fim_syntax_attempts + 1):
            result = await self._generate(prompt, params)
            self._count(result.usage)
            fitted = await asyncio.to_thread(fit_python, prompt, result.text, suffix)
            if fitted is not None and (best is None or len(fitted) > len(best[0])):
                best = (fitted, result, attempt)
            if fitted or (fitted is not None and not result.text.strip()):
                break
            seed = (params.seed if params.seed is not None else secrets.randbelow(2**31)) + attempt
            params = GenerationParams(
                **{**params.__dict__, "temperature": max(params.temperature or 0.0, RETRY_TEMPERATURE), "seed": seed}
            )
        choice.attempts = attempt
        if best is None:
            raise UnprocessableError(
                f"The model produced no text with which the code parses as Python in {attempt} attempts.",
                param="check_syntax",
                code="syntax_unsatisfied",
            )
        fitted, result, _ = best
        choice.trimmed_chars = len(result.text) - len(fitted)
        choice.finish_reason = "stop" if choice.trimmed_chars else result.finish_reason
        choice.text += fitted
        if fitted:
            yield TextDelta(choice.index, fitted)

    def _estimate(self, prompt: str, text: str) -> Usage:
        """Usage of a generation stopped early (at the suffix), before the backend could report it."""
        count = self.services.provider.count_tokens
        return Usage(count(prompt + (self.req.suffix or "")), count(text) if text else 0)

    def _count(self, usage: Usage) -> None:
        self.usage = Usage(self.usage.prompt_tokens + usage.prompt_tokens, self.usage.completion_tokens + usage.completion_tokens)

    # ------------------------------------------------------------------ after
    def finish(self) -> None:
        """Record usage against the caller's token budget and in the metrics (success only)."""
        metrics = self.services.metrics
        metrics.tokens_in.labels(self.base_model, "completion").inc(self.usage.prompt_tokens)
        metrics.tokens_out.labels(self.base_model, "completion").inc(self.usage.completion_tokens)
        self.services.rate_limiter.record_tokens(self.principal.user_id, self.usage.total_tokens)
        self.services.usage.record_usage(self.principal.user_id, self.usage.prompt_tokens, self.usage.completion_tokens)
