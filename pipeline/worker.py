"""Running a stage as a worker process: real consumer and publisher, signals, start-up checks,
health and metrics endpoints, and the tracer provider.
"""

from __future__ import annotations

import logging
import signal
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
from pipeline.kafka_config import admin_config, client_id, consumer_config, producer_config
from pipeline.metrics import CONTENT_TYPE, StageMetrics
from pipeline.preflight import check_kafka
from pipeline.progress import Progress
from pipeline.publisher import Publisher
from pipeline.runner import RunnerObserver, StageRunner
from pipeline.settings import Settings
from pipeline.stage import Stage
from pipeline.telemetry import exporting, install_tracer_provider
from pipeline.topics import TopicNames, ensure_topics, installed_topic_specs

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


def group_id(stage_name: str, prefix: str = "") -> str:
    """The consumer group of a stage: every worker of a stage shares it.

    `prefix` is DARKROOM_TOPICS__PREFIX: deployments sharing a cluster have groups of their own too,
    and one prefixed ACL covers topics and groups.
    """
    return f"{prefix}darkroom.{stage_name}"


def build_runner(
    stage: Stage, settings: Settings, observer: RunnerObserver | None = None, tracer: Tracer | None = None,
    stats_cb: Callable[[str], None] | None = None, progress: Progress | None = None,
) -> StageRunner:
    """A runner wired to the real broker; `stats_cb` receives librdkafka's statistics (consumer lag);
    `progress` collects the heartbeats of the poll loop, the stage's work and the publisher."""
    client = client_id(settings, stage.name)
    group = group_id(stage.name, settings.topics.prefix)
    config: dict[str, Any] = dict(consumer_config(settings, group, client))
    if stats_cb is not None:
        config.update({"statistics.interval.ms": settings.telemetry.stats_interval_ms, "stats_cb": stats_cb})
    consumer = Consumer(config)
    names = TopicNames(settings.topics.prefix)
    publisher = Publisher(producer_config(settings, client), settings.worker.delivery_timeout_s, names, tracer,
                          heartbeat=progress.track("publisher") if progress is not None else None)
    return StageRunner(stage, consumer, publisher, settings.worker, observer=observer, tracer=tracer, names=names,
                       group=group, progress=progress)


def start_health_server(
    runner: StageRunner, checks: Mapping[str, Check], settings: Settings, metrics: StageMetrics | None = None,
    progress: Progress | None = None,
) -> HealthServer:
    """Serve /health/* and /metrics for `runner` on the configured host and port (0 = any free port).

    `/health/live` fails when a heartbeat of `progress` (poll loop, stage work, publisher, outbox
    relays) has been busy without an outcome for `DARKROOM_WORKER__LIVENESS_TIMEOUT_S`.
    """
    watchdog = progress if progress is not None else Progress(settings.worker.liveness_timeout_s)

    def live() -> str | None:
        return watchdog.stuck()

    def ready() -> str | None:
        if runner.stopping:
            return "draining: stop requested"
        if not runner.assigned.is_set():
            return "waiting for the consumer group to assign partitions"
        if runner.assigned_partitions == 0:
            # More workers than partitions, or all of them moved away: this worker can do no work.
            return "no partitions assigned (more workers than partitions, or a rebalance in progress)"
        return None

    host, port = settings.worker.http_host, settings.worker.http_port
    try:
        server = HealthServer(
            host, port, checks=HealthChecks(
                checks, timeout_s=settings.telemetry.check_timeout_s,
                failures_before_unready=settings.telemetry.failures_before_unready,
            ),
            live=live, ready=ready, metrics=metrics, metrics_content_type=CONTENT_TYPE,
        )
    except OSError as exc:
        raise OSError(
            f"cannot serve health and metrics on {host}:{port}: {exc}; choose another DARKROOM_WORKER__HTTP_PORT (0 = any)"
        ) from exc
    return server.start()


def run_worker(
    stage_name: str, settings: Settings, checks: Mapping[str, Check] | None = None,
) -> StageRunner:
    """Run a stage in this process until SIGTERM or SIGINT, then drain and commit. Returns the finished runner.

    While it runs, the worker serves /health/* and /metrics (see pipeline/health.py) and traces each
    message as a span continuing the trace of its input. `checks` adds named health checks to those
    of the stage (`health_checks()`) and the Kafka one.
    """
    # Fused stages in one order: one consumer group however they are asked for (ValueError if unknown).
    stage_name = canonical_stage(stage_name)
    # Configuration first: building the stage validates the pipeline file and the storage settings,
    # and the tracer its OTEL_* variables, so a wrong field is reported (ConfigError) before the
    # operator hears about Kafka.
    stage = build_stage(stage_name, settings)
    # Spans cost a few microseconds each; made only when they go somewhere. Without an exporter the
    # traceparent header still carries the trace from stage to stage.
    tracing = install_tracer_provider(settings.telemetry, stage_name) if exporting(settings.telemetry) else None
    check_kafka(settings)  # a wrong password or CA fails in seconds with a clear message, not a 30 s timeout
    admin = AdminClient(admin_config(settings))
    if settings.topics.manage:  # on a real cluster topics are the operator's (`darkroom topics ensure --apply`)
        ensure_topics(admin, installed_topic_specs(settings.topics))
    metrics = StageMetrics(stage_name, settings.telemetry.service_name)
    progress = Progress(settings.worker.liveness_timeout_s)
    runner = build_runner(
        stage, settings, observer=metrics, tracer=tracing.get_tracer("darkroom.runner") if tracing else None,
        stats_cb=metrics.on_stats, progress=progress,
    )
    watch = getattr(stage, "watch_progress", None)
    if callable(watch):
        watch(progress)  # e.g. the outbox relay of a business consumer
    metrics.watch_in_flight(lambda: runner.stats.in_flight)
    all_checks = {
        KAFKA: kafka_check(admin, TopicNames(settings.topics.prefix)(stage.topics[0]), settings.telemetry.check_timeout_s),
        **stage_checks(stage),
        **(checks or {}),
    }
    server = start_health_server(runner, all_checks, settings, metrics, progress)
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
