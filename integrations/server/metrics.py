"""Prometheus metrics of one server (its own registry, so several apps in a process do not collide)."""
from __future__ import annotations

from collections.abc import Callable

from llm2vec_rag.integrations._shared import require

from .engine import BatchStats

ROUTES = {"/v1/embeddings", "/v1/search", "/v1/models", "/embed", "/", "/api/embed", "/api/embeddings", "/info",
          "/health", "/metrics", "/api/tags"}


class Metrics:
    def __init__(self) -> None:
        prom = require("prometheus_client", "server", "prometheus-client")
        self._prom = prom
        prom.disable_created_metrics()  # no *_created series: they double the scrape for no use here
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter("llm2vec_rag_requests", "HTTP requests by route and outcome",
                                     ["route", "outcome"], registry=r)
        self.inputs = prom.Counter("llm2vec_rag_inputs", "Texts embedded", registry=r)
        self.tokens = prom.Counter("llm2vec_rag_tokens", "Tokens run through the model", registry=r)
        self.batches = prom.Counter("llm2vec_rag_batches", "Encode calls (each may pack several requests)",
                                    registry=r)
        self.batch_inputs = prom.Histogram("llm2vec_rag_batch_inputs", "Texts per encode call", registry=r,
                                           buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096))
        self.batch_requests = prom.Histogram("llm2vec_rag_batch_requests", "Requests packed into one encode call",
                                             registry=r, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_tokens = prom.Histogram("llm2vec_rag_batch_tokens", "Tokens per encode call", registry=r,
                                           buckets=(16, 64, 256, 1024, 4096, 16384, 65536, 262144))
        self.queue_seconds = prom.Histogram("llm2vec_rag_queue_seconds", "Time a request waited for the model",
                                            registry=r)
        self.inference_seconds = prom.Histogram("llm2vec_rag_inference_seconds", "Duration of one encode call",
                                                registry=r)

    def gauges(self, queued: Callable[[], float], pending: Callable[[], float], dropped: Callable[[], float],
               ready: Callable[[], float]) -> None:
        prom, r = self._prom, self.registry
        prom.Gauge("llm2vec_rag_queue_size", "Requests waiting for the model", registry=r).set_function(queued)
        prom.Gauge("llm2vec_rag_requests_in_flight", "Requests queued or running (429 at the limit)",
                   registry=r).set_function(pending)
        prom.Gauge("llm2vec_rag_dropped_requests", "Requests dropped unrun because their client went away",
                   registry=r).set_function(dropped)
        prom.Gauge("llm2vec_rag_ready", "1 once the models are loaded", registry=r).set_function(ready)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batches.inc()
        self.inputs.inc(stats.inputs)
        self.tokens.inc(stats.tokens)
        self.batch_inputs.observe(stats.inputs)
        self.batch_requests.observe(stats.requests)
        self.batch_tokens.observe(stats.tokens)
        self.inference_seconds.observe(stats.inference_s)
        for wait in stats.queue_s:
            self.queue_seconds.observe(wait)

    def count(self, path: str, status: int) -> None:
        route = path if path in ROUTES else ("/v1/models/{id}" if path.startswith("/v1/models/") else "other")
        self.requests.labels(route=route, outcome=outcome(status)).inc()

    def render(self) -> tuple[bytes, str]:
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST


def outcome(status: int) -> str:
    return {200: "ok", 400: "bad_request", 401: "unauthorized", 404: "not_found", 413: "too_large",
            429: "rate_limited", 499: "disconnected", 503: "unavailable"}.get(status, "error" if status >= 500
                                                                              else str(status))
