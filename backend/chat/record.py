"""Step 4 of a chat request: ``record`` is called once, after a successful run, off the event loop.

It counts the tokens (metrics, the caller's token budget, the per-user usage counters, written
behind by ``UsageStore.count_later``) and appends
the exchange to the conversation, the assistant message carrying ``meta`` (model, mode, usage, time).
``count_outcome`` labels the completion counter for runs that end otherwise (error, cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from backend.chat.events import ChatResult
from backend.chat.messages import new_turn
from backend.chat.plan import ChatPlan
from backend.chat.render import reply_message
from backend.observability.metrics import Metrics
from backend.services import Services


def meta(plan: ChatPlan, result: ChatResult) -> dict[str, Any]:
    return {
        "model": plan.model,
        "mode": plan.mode.value,
        "usage": result.usage.to_openai(),
        "elapsed_ms": result.elapsed_ms,
    }


def record(services: Services, plan: ChatPlan, result: ChatResult, response_body: dict[str, Any] | None) -> None:
    """Count usage and store the exchange (``response_body`` answers a later repeat of this request)."""
    usage = result.usage
    services.metrics.tokens_in.labels(plan.base_model, plan.mode.value).inc(usage.prompt_tokens)
    services.metrics.tokens_out.labels(plan.base_model, plan.mode.value).inc(usage.completion_tokens)
    services.rate_limiter.record_tokens(plan.user_id, usage.total_tokens)
    services.usage.count_later(plan.user_id, usage.prompt_tokens, usage.completion_tokens)
    conv = plan.conversation
    if conv is not None:
        services.conversations.append_exchange(
            plan.user_id,
            conv.id,
            new_turn(plan.messages),
            {**reply_message(result), "meta": meta(plan, result)},
            idempotency_key=conv.record_key,
            response=response_body,
            dedupe=conv.dedupe,
        )


async def record_off_loop(
    services: Services, plan: ChatPlan, result: ChatResult, response_body: dict[str, Any] | None
) -> None:
    """``record`` in a worker thread when it writes (a conversation) or may wait on the network (Redis);
    otherwise inline: counters in memory, the usage files written by their own writer thread."""
    if plan.conversation is None and services.settings.redis_url is None:
        record(services, plan, result, response_body)
    else:
        await asyncio.to_thread(record, services, plan, result, response_body)


@contextlib.contextmanager
def count_outcome(metrics: Metrics, plan: ChatPlan) -> Iterator[None]:
    """Count a run that is cancelled (client gone) or fails; success is counted by the caller."""
    labels = (plan.base_model, plan.mode.value, "true" if plan.stream else "false")
    try:
        yield
    except asyncio.CancelledError:
        metrics.completions.labels(*labels, "cancelled").inc()
        raise
    except Exception:
        metrics.completions.labels(*labels, "error").inc()
        raise


def count_success(metrics: Metrics, plan: ChatPlan) -> None:
    """``ok`` for a complete JSON answer, ``started`` for a stream under way."""
    outcome = "started" if plan.stream else "ok"
    metrics.completions.labels(plan.base_model, plan.mode.value, "true" if plan.stream else "false", outcome).inc()
