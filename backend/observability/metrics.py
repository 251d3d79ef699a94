"""Prometheus metrics (one registry per app instance). No user ids as labels."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("http_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP latency", ["route", "method"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("llm_queue_depth", "Requests waiting for the model", registry=r)
        self.queue_active = Gauge("llm_active_generations", "Generations running", registry=r)
        self.queue_wait = Histogram(
            "llm_queue_wait_seconds", "Time waiting for a model slot", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.completions = Counter(
            "llm_completions_total", "Chat completions", ["model", "mode", "stream", "outcome"], registry=r
        )
        self.tokens_in = Counter("llm_prompt_tokens_total", "Prompt tokens", ["model", "mode"], registry=r)
        self.tokens_out = Counter("llm_completion_tokens_total", "Completion tokens", ["model", "mode"], registry=r)
        self.ttft = Histogram(
            "llm_time_to_first_token_seconds", "Time to first token", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.tool_calls = Counter("agent_tool_calls_total", "Server-side tool calls", ["tool", "outcome"], registry=r)
        self.rate_limited = Counter("rate_limited_total", "Requests refused by rate limits", ["kind"], registry=r)

        self._request_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def observe_request(self, route: str, method: str, status: str, duration_s: float) -> None:
        """Count one HTTP request and observe its latency (label children cached: ``labels()`` takes
        a lock and builds tuples on every call)."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(route, method, status), self.latency.labels(route, method))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(duration_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
