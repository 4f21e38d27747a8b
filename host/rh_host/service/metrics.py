"""Prometheus metrics, in the service's own registry (several services can share one process in tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics"]

_RUN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _QueueDepth(Collector):
    def __init__(self, depth: Callable[[], dict[str, int]]) -> None:
        self._depth = depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("rh_batches", "Batches stored, by status (queue depth: queued).", labels=["status"])
        for status, count in self._depth().items():
            family.add_metric([status], count)
        yield family


class Metrics:
    def __init__(self, depth: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.batches_accepted = Counter(
            "rh_batches_accepted", "Batches accepted (202) for the first time.", registry=self.registry
        )
        self.batches_completed = Counter(
            "rh_batches_completed", "Batches with a stored outcome.", ["success"], registry=self.registry
        )
        self.runs = Counter("rh_runs", "Handler runs ended, by status.", ["status"], registry=self.registry)
        self.run_seconds = Histogram(
            "rh_run_duration_seconds", "Wall time of one handler run.", buckets=_RUN_BUCKETS, registry=self.registry
        )
        self.batch_seconds = Histogram(
            "rh_batch_latency_seconds",
            "Submit-to-outcome latency of a batch.",
            buckets=_RUN_BUCKETS,
            registry=self.registry,
        )
        self.uploads_rejected = Counter("rh_uploads_rejected", "Plugin archives refused.", registry=self.registry)
        self.registry.register(_QueueDepth(depth))

    def render(self) -> bytes:
        return generate_latest(self.registry)
