"""Prometheus metrics of ``instructfast serve``: requests, rows, batches, queue depth, latency per indicator.

Each app has a registry of its own (several apps in one process, as in the tests, do not collide).
With ``--workers N`` every worker process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode, chosen when prometheus-client is first imported) and
``/metrics`` of whichever worker answers sums them over all workers; gauges sum over live ones.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _mp

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def multiprocess_mode() -> bool:
    """Whether values go to the shared directory (set before prometheus-client was imported)."""
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The service's metrics; also the :class:`~instructfast.batcher.BatchObserver` of its scorer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "instructfast_requests",
            "Scoring requests that ended, by outcome (ok, error, overloaded)",
            ["outcome"],
            registry=r,
        )
        self.rows = Counter("instructfast_rows", "Rows scored", registry=r)
        self.request_seconds = Histogram(
            "instructfast_request_seconds",
            "From a request's arrival at the scorer to its rows",
            buckets=_SECONDS,
            registry=r,
        )
        self.batch_rows = Histogram("instructfast_batch_rows", "Rows per merged batch", buckets=_ROWS, registry=r)
        self.batch_requests = Histogram(
            "instructfast_batch_requests", "Requests merged per batch", buckets=_ROWS, registry=r
        )
        self.batch_seconds = Histogram(
            "instructfast_batch_seconds", "Scoring time of a merged batch", buckets=_SECONDS, registry=r
        )
        self.indicator_seconds = Histogram(
            "instructfast_indicator_seconds",
            "One indicator's pass over a merged batch",
            ["indicator"],
            buckets=_SECONDS,
            registry=r,
        )
        self.queue_rows = Gauge(
            "instructfast_queue_rows", "Rows waiting to be batched", multiprocess_mode="livesum", registry=r
        )
        self.queue_requests = Gauge(
            "instructfast_queue_requests", "Requests waiting to be batched", multiprocess_mode="livesum", registry=r
        )
        self.http = Counter(
            "instructfast_http_requests", "HTTP requests by path and status", ["method", "path", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "instructfast_http_request_seconds", "HTTP request latency by path", ["path"], buckets=_SECONDS, registry=r
        )

    # BatchObserver
    def queue(self, rows: int, requests: int) -> None:
        self.queue_rows.set(rows)
        self.queue_requests.set(requests)

    def batch(self, rows: int, requests: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)

    def indicator(self, name: str, rows: int, seconds: float) -> None:
        self.indicator_seconds.labels(indicator=name).observe(seconds)

    def request(self, rows: int, seconds: float, outcome: str) -> None:
        self.requests.labels(outcome=outcome).inc()
        if outcome == "ok":
            self.rows.inc(rows)
            self.request_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text (summed over workers in multiprocess mode) and its content type."""
        if multiprocess_mode():
            registry = CollectorRegistry()
            _mp.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Drop a finished worker's live gauges (multiprocess mode only)."""
    if multiprocess_mode():
        _mp.mark_process_dead(pid)


__all__ = ["MULTIPROC_ENV", "Metrics", "multiprocess_mode", "process_exited"]
