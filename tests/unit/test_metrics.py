"""Metrics: what the runner reports shows up in the Prometheus text, with bounded labels."""

from __future__ import annotations

import re
import threading

from pipeline.metrics import StageMetrics, parse_consumer_lag
from pipeline.runner import StageRunner
from tests.unit.fakes import FakeConsumer, FakePublisher
from tests.unit.test_runner import SETTINGS, ScriptedStage, msg


def value(text: str, name: str, **labels: str) -> float:
    """The value of the series `name` whose labels include `labels` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_runner_outcomes_become_counters_and_a_histogram() -> None:
    metrics = StageMetrics("fake")
    stage = ScriptedStage()
    consumer = FakeConsumer([
        msg(0, 0, b"a"), msg(0, 1, b"flaky:1"), msg(0, 2, b"poison"), msg(0, 3, b"b", event_type=b"other.event"),
    ])
    publisher = FakePublisher(consumer.changed)
    runner = StageRunner(stage, consumer, publisher, SETTINGS, observer=metrics)
    metrics.watch_in_flight(lambda: runner.stats.in_flight)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    assert consumer.wait_committed({("files", 0): 4})
    runner.stop()
    thread.join(10)

    text = metrics.render().decode()
    assert value(text, "darkroom_events_processed_total", stage="fake", event_type="x.y") == 2
    assert value(text, "darkroom_events_retried_total", event_type="x.y") == 1
    assert value(text, "darkroom_events_failed_total", event_type="x.y", kind="transient") == 1
    assert value(text, "darkroom_events_failed_total", event_type="x.y", kind="permanent") == 1
    assert value(text, "darkroom_events_dead_lettered_total", event_type="x.y") == 1
    assert value(text, "darkroom_events_skipped_total", event_type="other.event") == 1
    assert value(text, "darkroom_processing_duration_seconds_count", outcome="ok") == 2
    assert value(text, "darkroom_processing_duration_seconds_count", outcome="error") == 2
    assert value(text, "darkroom_in_flight", stage="fake") == 0


def test_hostile_event_types_fold_into_one_label() -> None:
    metrics = StageMetrics("fake")
    for i in range(100):
        metrics.processed(f"evil\n{i}", 0.01)
    metrics.processed("file.uploaded", 0.01)
    text = metrics.render().decode()
    assert value(text, "darkroom_events_processed_total", event_type="other") == 100
    assert value(text, "darkroom_events_processed_total", event_type="file.uploaded") == 1
    assert len(re.findall(r"^darkroom_events_processed_total\{", text, re.M)) == 2


def test_consumer_lag_comes_from_librdkafka_statistics() -> None:
    stats = {"topics": {"files": {"partitions": {
        "0": {"desired": True, "consumer_lag": 7},
        "1": {"desired": True, "consumer_lag": -1},  # no committed offset yet: unknown, not zero
        "2": {"desired": False, "consumer_lag": 3},  # not ours (any more)
        "-1": {"desired": False, "consumer_lag": -1},
    }}}}
    assert parse_consumer_lag(stats) == {("files", 0): 7}
    metrics = StageMetrics("resize")
    metrics.on_stats('{"topics": {"files": {"partitions": {"4": {"desired": true, "consumer_lag": 12}}}}}')
    metrics.on_stats("not json")  # ignored, keeps the last good value
    text = metrics.render().decode()
    assert value(text, "darkroom_consumer_lag", topic="files", partition="4", stage="resize") == 12
