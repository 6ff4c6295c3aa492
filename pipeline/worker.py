"""Running a stage as a worker process: real consumer and publisher, signals, start-up checks."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from importlib.metadata import entry_points
from types import FrameType

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from pipeline.kafka_config import admin_config, consumer_config, producer_config
from pipeline.publisher import Publisher
from pipeline.runner import StageRunner
from pipeline.settings import Settings
from pipeline.stage import Stage
from pipeline.topics import default_topic_specs, ensure_topics

log = logging.getLogger(__name__)

STAGE_ENTRY_POINTS = "darkroom.stages"

StageFactory = Callable[[Settings], Stage]


def stage_factories() -> dict[str, StageFactory]:
    """Stages installed as `darkroom.stages` entry points, by name."""
    return {ep.name: ep.load() for ep in entry_points(group=STAGE_ENTRY_POINTS)}


def group_id(stage_name: str) -> str:
    """The consumer group of a stage: every worker of a stage shares it."""
    return f"darkroom.{stage_name}"


def build_runner(stage: Stage, settings: Settings) -> StageRunner:
    """A runner wired to the real broker."""
    consumer = Consumer(consumer_config(settings, group_id(stage.name)))
    publisher = Publisher(producer_config(settings), settings.worker.delivery_timeout_s)
    return StageRunner(stage, consumer, publisher, settings.worker)


def run_worker(stage_name: str, settings: Settings, ensure: bool = True) -> StageRunner:
    """Run a stage in this process until SIGTERM or SIGINT, then drain and commit. Returns the finished runner."""
    factories = stage_factories()
    if stage_name not in factories:
        raise ValueError(f"unknown stage {stage_name!r}; installed stages: {', '.join(sorted(factories))}")
    if ensure:
        ensure_topics(AdminClient(admin_config(settings)), default_topic_specs())
    runner = build_runner(factories[stage_name](settings), settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning("%s: %s received, draining in-flight work", stage_name, signal.Signals(signum).name)
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.run()
    return runner
