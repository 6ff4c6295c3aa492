"""A worker's metrics, made with the OpenTelemetry SDK and read in Prometheus text format at `/metrics`.

What is measured (Prometheus names; every series carries `stage`):
- `darkroom_events_processed_total{event_type}`: events whose outputs were acknowledged;
- `darkroom_events_failed_total{event_type,kind}`: processing attempts that raised (`kind` = transient/permanent);
- `darkroom_events_retried_total{event_type}`: retries scheduled after a transient failure;
- `darkroom_events_dead_lettered_total{event_type}`: events whose dead letter was acknowledged;
- `darkroom_events_skipped_total{event_type}`: events the stage does not handle (filtered on headers);
- `darkroom_processing_duration_seconds{event_type,outcome}`: histogram of one processing attempt;
- `darkroom_consumer_lag{topic,partition}`: messages behind the end, per assigned partition (librdkafka
  statistics, refreshed every `DARKROOM_TELEMETRY__STATS_INTERVAL_MS`);
- `darkroom_in_flight`: events received and not yet finished;
- `process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds`… (prometheus_client's
  process collector, read from /proc at scrape time): the worker's memory and CPU.

Counters are recorded on the runner's polling thread; the OTel SDK aggregates them in memory and the
Prometheus exporter renders them only when scraped, so the hot path pays a few microseconds per event.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds: from a skipped header check to a 100 MP decode on a busy core.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Event types become label values: anything unlike an event type (a hostile header) is folded into
# one value, so a producer cannot blow up the number of series.
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,7}$")
_MAX_EVENT_TYPES = 64


class StageMetrics:
    """The metrics of one worker of one stage; implements the runner's `RunnerObserver`."""

    def __init__(self, stage: str, service_name: str = "darkroom", registry: CollectorRegistry | None = None) -> None:
        self.stage = stage
        # A registry of our own (not prometheus_client's global one), so tests can build many.
        self.registry = registry if registry is not None else CollectorRegistry()
        reader = PrometheusMetricReader(registry=self.registry, scope_info_enabled=False)
        # Memory and CPU of this process under the names every Prometheus dashboard knows.
        ProcessCollector(registry=self.registry)
        self._provider = MeterProvider(
            metric_readers=[reader], resource=Resource.create({"service.name": f"{service_name}-{stage}"})
        )
        meter = self._provider.get_meter("darkroom.worker")
        self._processed = meter.create_counter(
            "darkroom.events.processed", unit="1", description="Events processed and their outputs acknowledged")
        self._failed = meter.create_counter(
            "darkroom.events.failed", unit="1", description="Processing attempts that raised")
        self._retried = meter.create_counter(
            "darkroom.events.retried", unit="1", description="Retries scheduled after a transient failure")
        self._dead_lettered = meter.create_counter(
            "darkroom.events.dead_lettered", unit="1", description="Events sent to the dead-letter queue")
        self._skipped = meter.create_counter(
            "darkroom.events.skipped", unit="1", description="Events this stage does not handle")
        self._duration = meter.create_histogram(
            "darkroom.processing.duration", unit="s", description="Time of one processing attempt",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        meter.create_observable_gauge(
            "darkroom.consumer.lag", callbacks=[self._observe_lag], unit="1",
            description="Messages between the committed offset and the end of each assigned partition",
        )
        meter.create_observable_gauge(
            "darkroom.in_flight", callbacks=[self._observe_in_flight], unit="1",
            description="Events received and not yet finished",
        )
        self._lag: dict[tuple[str, int], int] = {}
        self._in_flight: Callable[[], int] = lambda: 0
        self._attrs: dict[str, dict[str, str]] = {}
        self._other = {"stage": stage, "event_type": "other"}

    # -- RunnerObserver ---------------------------------------------------------------------------

    def processed(self, event_type: str, seconds: float) -> None:
        attrs = self._base(event_type)
        self._processed.add(1, attrs)
        self._duration.record(seconds, {**attrs, "outcome": "ok"})

    def failed(self, event_type: str, kind: str, seconds: float) -> None:
        attrs = self._base(event_type)
        self._failed.add(1, {**attrs, "kind": kind})
        self._duration.record(seconds, {**attrs, "outcome": "error"})

    def retried(self, event_type: str) -> None:
        self._retried.add(1, self._base(event_type))

    def dead_lettered(self, event_type: str) -> None:
        self._dead_lettered.add(1, self._base(event_type))

    def skipped(self, event_type: str) -> None:
        self._skipped.add(1, self._base(event_type))

    # -- gauges -----------------------------------------------------------------------------------

    def watch_in_flight(self, read: Callable[[], int]) -> None:
        """Where the in-flight gauge reads its value (the runner's last count)."""
        self._in_flight = read

    def on_stats(self, stats_json: str) -> None:
        """librdkafka's `stats_cb`: keep the consumer lag of every partition this consumer owns."""
        try:
            stats = json.loads(stats_json)
        except ValueError:
            return
        self._lag = parse_consumer_lag(stats)  # replaced whole: the scrape thread reads it without a lock

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        for (topic, partition), lag in self._lag.items():
            yield Observation(lag, {"stage": self.stage, "topic": topic, "partition": str(partition)})

    def _observe_in_flight(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._in_flight(), {"stage": self.stage})

    # -- exposition -------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (collects the SDK's current values)."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self._provider.shutdown()

    def _base(self, event_type: str) -> dict[str, str]:
        attrs = self._attrs.get(event_type)
        if attrs is None:
            valid = event_type == "none" or _EVENT_TYPE.match(event_type) is not None
            if not valid or len(self._attrs) >= _MAX_EVENT_TYPES:
                return self._other  # not cached: hostile values must not grow memory either
            attrs = self._attrs[event_type] = {"stage": self.stage, "event_type": event_type}
        return attrs


def parse_consumer_lag(stats: dict[str, object]) -> dict[tuple[str, int], int]:
    """Consumer lag per (topic, partition) from a librdkafka statistics object.

    Only partitions the consumer owns (`desired`) with a known lag (>= 0) count; partition -1 is
    librdkafka's internal "unassigned" bucket.
    """
    lag: dict[tuple[str, int], int] = {}
    topics = stats.get("topics")
    if not isinstance(topics, dict):
        return lag
    for topic, tstats in topics.items():
        partitions = tstats.get("partitions", {}) if isinstance(tstats, dict) else {}
        for pid, pstats in partitions.items():
            if not isinstance(pstats, dict) or int(pid) < 0 or not pstats.get("desired"):
                continue
            value = pstats.get("consumer_lag", -1)
            if isinstance(value, int) and value >= 0:
                lag[(topic, int(pid))] = value
    return lag
