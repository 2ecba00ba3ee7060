"""Prometheus metrics of one `vtc-lab serve` app (`GET /metrics`), in its own registry so that
several apps in one process (tests) do not share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 - re-exported for the route

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServeMetrics:
    """Requests by route and status, prompt and generated tokens, request latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("vtc_serve_requests", "HTTP requests answered",
                                ["route", "status"], registry=self.registry)
        self.prompt_tokens = Counter("vtc_serve_prompt_tokens", "Prompt tokens of answered "
                                     "requests", ["route"], registry=self.registry)
        self.generation_tokens = Counter("vtc_serve_generation_tokens", "Generated tokens",
                                         ["route"], registry=self.registry)
        self.latency = Histogram("vtc_serve_request_latency_seconds", "Request latency from "
                                 "the first byte read to the response", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
