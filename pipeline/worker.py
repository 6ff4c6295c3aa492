"""Running a stage as a worker process: real consumer and publisher, signals, start-up checks,
health and metrics endpoints, and the tracer provider.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from types import FrameType
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from opentelemetry.trace import Tracer

from pipeline.fusion import fused_name, fusion_for, split_stages
from pipeline.health import (
    KAFKA,
    Check,
    HealthChecks,
    HealthServer,
    kafka_check,
    stage_checks,
)
from pipeline.kafka_config import admin_config, consumer_config, producer_config
from pipeline.metrics import CONTENT_TYPE, StageMetrics
from pipeline.preflight import check_kafka
from pipeline.publisher import Publisher
from pipeline.runner import RunnerObserver, StageRunner
from pipeline.settings import Settings
from pipeline.stage import Stage
from pipeline.telemetry import install_tracer_provider
from pipeline.topics import ensure_topics, installed_topic_specs

log = logging.getLogger(__name__)

STAGE_ENTRY_POINTS = "darkroom.stages"

StageFactory = Callable[[Settings], Stage]


def stage_factories() -> dict[str, StageFactory]:
    """Stages installed as `darkroom.stages` entry points, by name."""
    return {ep.name: ep.load() for ep in entry_points(group=STAGE_ENTRY_POINTS)}


def canonical_stage(name: str) -> str:
    """The canonical name of what `darkroom worker NAME` runs: an installed stage, or stages fused
    (`resize,thumbnail,watermark` → `resize+thumbnail+watermark`). ValueError saying what is installed."""
    parts = split_stages(name)
    installed = stage_factories()
    unknown = [p for p in parts if p not in installed]
    if unknown or not parts:
        raise ValueError(f"unknown stage {', '.join(unknown) or repr(name)}; installed stages: {', '.join(sorted(installed))}")
    if len(parts) > 1:
        fusion_for(parts)  # refuses stages no installed fusion runs together
    return fused_name(parts)


def build_stage(name: str, settings: Settings) -> Stage:
    """The stage `name` (see `canonical_stage`): one installed stage, or several run fused by their fusion."""
    parts = split_stages(canonical_stage(name))
    if len(parts) == 1:
        return stage_factories()[parts[0]](settings)
    return fusion_for(parts).build(parts, settings)


def group_id(stage_name: str) -> str:
    """The consumer group of a stage: every worker of a stage shares it."""
    return f"darkroom.{stage_name}"


def build_runner(
    stage: Stage, settings: Settings, observer: RunnerObserver | None = None, tracer: Tracer | None = None,
    stats_cb: Callable[[str], None] | None = None,
) -> StageRunner:
    """A runner wired to the real broker; `stats_cb` receives librdkafka's statistics (consumer lag)."""
    config: dict[str, Any] = dict(consumer_config(settings, group_id(stage.name)))
    if stats_cb is not None:
        config.update({"statistics.interval.ms": settings.telemetry.stats_interval_ms, "stats_cb": stats_cb})
    consumer = Consumer(config)
    publisher = Publisher(producer_config(settings), settings.worker.delivery_timeout_s)
    return StageRunner(stage, consumer, publisher, settings.worker, observer=observer, tracer=tracer)


def start_health_server(
    runner: StageRunner, checks: Mapping[str, Check], settings: Settings, metrics: StageMetrics | None = None,
) -> HealthServer:
    """Serve /health/* and /metrics for `runner` on the configured host and port (0 = any free port)."""
    # A revocation may hold the loop for up to the drain timeout; only well beyond that is it stuck.
    stale_after_s = settings.worker.drain_timeout_s + 60.0

    def live() -> str | None:
        age = time.monotonic() - runner.heartbeat
        return None if age < stale_after_s else f"the polling loop has not gone round for {age:.0f}s"

    def ready() -> str | None:
        if runner.stopping:
            return "draining: stop requested"
        if not runner.assigned.is_set():
            return "waiting for the consumer group to assign partitions"
        return None

    host, port = settings.worker.http_host, settings.worker.http_port
    try:
        server = HealthServer(
            host, port, checks=HealthChecks(checks, timeout_s=settings.telemetry.check_timeout_s),
            live=live, ready=ready, metrics=metrics, metrics_content_type=CONTENT_TYPE,
        )
    except OSError as exc:
        raise OSError(
            f"cannot serve health and metrics on {host}:{port}: {exc}; choose another DARKROOM_WORKER__HTTP_PORT (0 = any)"
        ) from exc
    return server.start()


def run_worker(
    stage_name: str, settings: Settings, ensure: bool = True, checks: Mapping[str, Check] | None = None,
) -> StageRunner:
    """Run a stage in this process until SIGTERM or SIGINT, then drain and commit. Returns the finished runner.

    While it runs, the worker serves /health/* and /metrics (see pipeline/health.py) and traces each
    message as a span continuing the trace of its input. `checks` adds named health checks to those
    of the stage (`health_checks()`) and the Kafka one.
    """
    stage_name = canonical_stage(stage_name)  # fused stages in one order: one consumer group however asked
    check_kafka(settings)  # a wrong password or CA fails in seconds with a clear message, not a 30 s timeout
    admin = AdminClient(admin_config(settings))
    if ensure:
        ensure_topics(admin, installed_topic_specs())
    stage = build_stage(stage_name, settings)
    # Spans cost a few microseconds each; made only when they go somewhere. Without an exporter the
    # traceparent header still carries the trace from stage to stage.
    exporting = settings.telemetry.otlp_endpoint is not None or settings.telemetry.span_file is not None
    tracing = install_tracer_provider(settings.telemetry, stage_name) if exporting else None
    metrics = StageMetrics(stage_name, settings.telemetry.service_name)
    runner = build_runner(
        stage, settings, observer=metrics, tracer=tracing.get_tracer("darkroom.runner") if tracing else None,
        stats_cb=metrics.on_stats,
    )
    metrics.watch_in_flight(lambda: runner.stats.in_flight)
    all_checks = {
        KAFKA: kafka_check(admin, stage.topics[0], settings.telemetry.check_timeout_s),
        **stage_checks(stage),
        **(checks or {}),
    }
    server = start_health_server(runner, all_checks, settings, metrics)
    # Parsed by the fleet supervisor's tests and handy by hand with port 0; once per process, not per message.
    log.info("%s: health and metrics on %s (%s)", stage_name, server.url, ", ".join(server.paths()))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning("%s: %s received, draining in-flight work", stage_name, signal.Signals(signum).name)
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runner.run()
    finally:
        server.close()
        metrics.shutdown()
        if tracing is not None:
            tracing.shutdown()  # flushes spans still batched
    return runner
