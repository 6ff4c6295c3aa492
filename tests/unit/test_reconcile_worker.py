"""The reconcile worker's schedule and state (full or incremental pass, ticks skipped), and the fleet's default."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from operations.fleet.spec import default_workers
from pipeline.contracts.renditions import load_rendition_graph, parse_rendition_graph
from pipeline.errors import ErrorKind, is_outage
from pipeline.settings import ReconcileSettings, Settings
from pipeline.stage import Received
from stages.ingest.reconcile_stage import RECONCILE_TICKS, ReconcileStage, topic_specs
from stages.ingest.reconciler import ReconcileReport

REPO = Path(__file__).resolve().parents[2]


class Passes:
    """Records each pass's arguments; can be told to fail the next one."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail: Exception | None = None
        self.recent: set[str] = set()

    def __call__(self, store: object, publisher: object, settings: Settings, grace_s: float, **kw: Any) -> ReconcileReport:
        if self.fail is not None:
            raise self.fail
        self.calls.append({"grace_s": grace_s, **kw})
        return ReconcileReport(full=kw["since"] is None, recent_shoots=set(self.recent))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoPublisher:
    def produce(self, message: object, on_done: object) -> None: ...
    def close(self) -> None: ...


def tick(offset: int) -> Received:
    return Received(RECONCILE_TICKS, 0, offset, b"tick", b"{}", [("eventType", b"reconcile.tick")], 0)


@pytest.fixture
def stage() -> tuple[ReconcileStage, Passes, Clock]:
    settings = Settings(reconcile=ReconcileSettings(interval_s=60, grace_s=30, full_sweep_every=3))
    passes, clock = Passes(), Clock()
    recon = ReconcileStage(object(), NoPublisher, settings, run_pass=passes, clock=clock)  # type: ignore[arg-type]
    recon._publisher = NoPublisher()  # type: ignore[assignment]  # as start() would, without the ticker thread
    return recon, passes, clock


def test_full_sweep_first_then_incremental_since_the_last_cutoff_and_a_full_sweep_every_nth(stage) -> None:
    recon, passes, clock = stage
    offsets = itertools.count()
    for _ in range(4):
        recon.process(tick(next(offsets)))
        clock.now += 60
    kinds = ["full" if c["since"] is None else "incremental" for c in passes.calls]
    assert kinds == ["full", "incremental", "incremental", "full"]
    first, second = passes.calls[0], passes.calls[1]
    # The second pass looks at what changed since the first one's cutoff (its start - grace), minus one grace of overlap.
    assert second["since"] == first["now"] - timedelta(seconds=30) - timedelta(seconds=30)
    assert all(c["grace_s"] == 30 for c in passes.calls)


def test_a_tick_soon_after_a_pass_is_skipped_and_a_failed_pass_moves_nothing_on(stage) -> None:
    recon, passes, clock = stage
    recon.process(tick(0))
    clock.now += 10  # a second instance's tick, or a backlog: less than half an interval later
    recon.process(tick(1))
    assert len(passes.calls) == 1
    clock.now += 50
    passes.fail = KafkaException(KafkaError(KafkaError._TRANSPORT))
    with pytest.raises(Exception) as failed:
        recon.process(tick(2))
    # The broker being away is an outage: the tick is retried as long as it lasts, never dead-lettered.
    assert is_outage(failed.value) and recon.classify(failed.value) is ErrorKind.TRANSIENT
    passes.fail = None
    recon.process(tick(2))  # the retry runs at once and is the incremental pass the failed one would have been
    assert recon.passes == 2 and passes.calls[1]["since"] is not None


def test_shoots_with_too_recent_originals_are_listed_again_by_the_next_incremental_pass(stage) -> None:
    recon, passes, clock = stage
    passes.recent = {"shoot-a"}
    recon.process(tick(0))
    clock.now += 60
    passes.recent = set()
    recon.process(tick(1))
    assert passes.calls[1]["also_shoots"] == {"shoot-a"}


def test_only_ticks_are_accepted_and_the_tick_topic_has_one_partition_whatever_the_default() -> None:
    recon = ReconcileStage(object(), NoPublisher, Settings(), run_pass=Passes())  # type: ignore[arg-type]
    assert recon.accepts({"eventType": b"reconcile.tick"})
    assert not recon.accepts({"eventType": b"file.uploaded"}) and not recon.accepts({})
    [spec] = topic_specs(12)
    assert spec.name == RECONCILE_TICKS and spec.partitions == 1


def test_fleet_default_runs_every_needed_stage_once_and_the_reconciler() -> None:
    installed = ["gallery", "ingest", "invite-sender", "invites", "notifier", "reconcile", "resize", "thumbnail",
                 "users", "watermark"]
    studio = default_workers(installed, load_rendition_graph(REPO / "examples" / "pipeline.yaml"))
    assert [s.stage for s in studio] == installed and {(s.minimum, s.maximum) for s in studio} == {(1, 1)}
    web_only = {s.stage for s in default_workers(installed, load_rendition_graph(None))}
    assert web_only == set(installed) - {"thumbnail", "watermark"}
    thumbs = parse_rendition_graph("renditions:\n  t: {stage: thumbnail, source: original, width: 100, height: 100}\n")
    assert "resize" not in {s.stage for s in default_workers(installed, thumbs)}

