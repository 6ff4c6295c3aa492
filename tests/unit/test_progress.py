"""Progress heartbeats: liveness fails only for a component busy without any outcome past the bound."""

from __future__ import annotations

from pipeline.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_component_is_never_stuck_however_long_it_waits() -> None:
    clock = Clock()
    progress = Progress(10.0, clock)
    progress.track("relay")
    clock.now += 3600
    assert progress.stuck() is None


def test_busy_without_progress_past_the_bound_names_the_component() -> None:
    clock = Clock()
    progress = Progress(10.0, clock)
    relay, loop = progress.track("gallery outbox relay"), progress.track("poll loop")
    loop.busy()
    relay.busy()
    clock.now += 9
    loop.progressed()
    assert progress.stuck() is None  # within the bound
    clock.now += 2
    loop.progressed()
    reason = progress.stuck()
    assert reason is not None and "gallery outbox relay" in reason and "poll loop" not in reason
    assert "11s" in reason


def test_progress_and_failures_alike_reset_the_clock_and_idle_clears_it() -> None:
    clock = Clock()
    progress = Progress(10.0, clock)
    work = progress.track("work")
    work.busy()
    for _ in range(5):  # outcomes every 8 s keep it alive, however long the work lasts
        clock.now += 8
        work.progressed()
        assert progress.stuck() is None
    clock.now += 11
    assert progress.stuck() is not None
    work.idle()
    assert progress.stuck() is None


def test_busy_again_after_idle_counts_from_the_new_start_not_the_old_progress() -> None:
    clock = Clock()
    progress = Progress(10.0, clock)
    work = progress.track("work")
    work.busy()
    work.progressed()
    work.idle()
    clock.now += 100
    work.busy()  # new work long after the last outcome: not stuck yet
    assert progress.stuck() is None
    clock.now += 10.5
    assert progress.stuck() is not None


def test_track_returns_the_same_heartbeat_for_a_name() -> None:
    progress = Progress(1.0)
    assert progress.track("a") is progress.track("a")
