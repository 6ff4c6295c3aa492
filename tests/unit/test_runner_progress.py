"""The runner's heartbeats: an attempt that never ends makes the worker not live; outcomes keep it live."""

from __future__ import annotations

import threading

from pipeline.progress import Progress
from pipeline.runner import StageRunner
from tests.unit.fakes import FakeConsumer, FakePublisher
from tests.unit.test_runner import SETTINGS, ScriptedStage, msg, stop


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_blocked_attempt_fails_liveness_naming_the_stage_work_and_its_end_clears_it() -> None:
    clock = Clock()
    progress = Progress(10.0, clock)
    stage = ScriptedStage()
    consumer = FakeConsumer([msg(0, 0, b"block"), msg(1, 0, b"flaky:1")])
    publisher = FakePublisher(consumer.changed)
    runner = StageRunner(stage, consumer, publisher, SETTINGS, progress=progress)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    # The flaky message fails once and succeeds: outcomes, both. The blocked one stays running.
    assert consumer.wait_committed({("files", 1): 1})
    clock.now += 11
    reason = progress.stuck()
    assert reason is not None and "fake work" in reason and "publisher" not in reason
    stage.release.set()
    assert consumer.wait_committed({("files", 0): 1})
    assert "fake work" not in (progress.stuck() or "")
    stop(runner, thread)
    assert progress.stuck() is None  # a stopped runner has no work and no loop to wait for
