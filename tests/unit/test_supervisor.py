"""The fleet supervisor's decisions with fake processes, a fake clock and fed lag: no Kafka, no workers."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from operations.fleet.lag import GroupLag
from operations.fleet.spec import StageSpec, parse_workers
from operations.fleet.state import read_state
from operations.fleet.supervisor import RestartPolicy, ScalePolicy, Supervisor


class FakeProcess:
    pids = iter(range(1000, 100000))

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.pid = next(self.pids)
        self.code: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)
        self.code = -9


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fleet(tmp_path: Path):
    clock = Clock()
    started: list[FakeProcess] = []

    def launch(stage: str, port: int, log: Path) -> FakeProcess:
        started.append(FakeProcess(stage))
        return started[-1]

    def make(workers: str, **scale: float) -> Supervisor:
        sup = Supervisor(
            parse_workers(workers), log_dir=tmp_path / "logs", launcher=launch, port_picker=lambda: 4242,
            state_file=tmp_path / "state.json", clock=clock,
            scale=ScalePolicy(**{"lag_per_worker": 10, "idle_s": 30, "cooldown_s": 5, **scale}),
            restart=RestartPolicy(initial_backoff_s=1, max_backoff_s=8, stable_after_s=60, stop_timeout_s=20),
        )
        sup.start()
        return sup

    return make, clock, started, tmp_path


def lag(stage: str, total: int, partitions: int = 6) -> GroupLag:
    per = [total // partitions + (1 if i < total % partitions else 0) for i in range(partitions)]
    return GroupLag(f"darkroom.{stage}", 0.0, {("files", i): n for i, n in enumerate(per)}, 0)


def test_parse_workers() -> None:
    assert parse_workers("resize=2, ingest=1,thumbnail=0..3") == [
        StageSpec("resize", 2, 2), StageSpec("ingest", 1, 1), StageSpec("thumbnail", 0, 3)]
    for bad in ("resize", "resize=3..1", "resize=0", "resize=1,resize=2", "", "Resize=1"):
        with pytest.raises(ValueError):
            parse_workers(bad)


def test_starts_minimum_and_restarts_a_killed_worker_with_growing_backoff(fleet) -> None:
    make, clock, started, tmp_path = fleet
    sup = make("resize=2,ingest=1")
    assert sorted(p.stage for p in started) == ["ingest", "resize", "resize"]
    victim = started[0]
    victim.code = -9  # SIGKILL from outside
    clock.now += 5
    sup.tick()
    assert victim.pid not in sup.pids(victim.stage) and sup.workers(victim.stage) == (2 if victim.stage == "resize" else 1)
    clock.now += 0.5
    sup.tick()
    assert len(started) == 3  # still in backoff (1 s)
    clock.now += 0.6
    sup.tick()
    assert len(started) == 4 and started[3].stage == victim.stage  # back
    # It dies again at once: the next backoff doubles.
    started[3].code = 1
    clock.now += 1
    sup.tick()
    clock.now += 1.5
    sup.tick()
    assert len(started) == 4
    clock.now += 0.6
    sup.tick()
    assert len(started) == 5
    state = read_state(tmp_path / "state.json")
    assert state is not None and any("restarting in 2s" in line for line in state.history)
    assert [w.restarts for w in state.stages[victim.stage].workers if w.pid == started[4].pid] == [2]


def test_lag_above_threshold_adds_workers_up_to_max_and_idle_removes_down_to_min(fleet) -> None:
    make, clock, started, _ = fleet
    sup = make("resize=1..3")
    assert sup.workers("resize") == 1
    sup.observe(lag("resize", 25))  # 25 > 10 × 1
    assert sup.workers("resize") == 2
    clock.now += 1
    sup.observe(lag("resize", 25))  # cooldown: no second step yet
    assert sup.workers("resize") == 2
    clock.now += 5
    sup.observe(lag("resize", 25))  # 25 > 10 × 2
    assert sup.workers("resize") == 3
    clock.now += 10
    sup.observe(lag("resize", 1000))  # at the maximum
    assert sup.workers("resize") == 3 and len(started) == 3

    clock.now += 10
    sup.observe(lag("resize", 0))  # idle starts now
    clock.now += 29
    sup.observe(lag("resize", 0))
    assert sup.workers("resize") == 3
    clock.now += 1
    sup.observe(lag("resize", 0))  # idle for 30 s: one fewer, the newest, by SIGTERM (it drains)
    assert sup.workers("resize") == 2
    assert started[2].signals == [signal.SIGTERM] and started[0].signals == []
    started[2].code = 0
    sup.tick()
    assert started[2].pid not in sup.pids("resize") and len(started) == 3  # retired, not restarted
    clock.now += 30
    sup.observe(lag("resize", 0))
    assert sup.workers("resize") == 1
    clock.now += 60
    sup.observe(lag("resize", 0))
    assert sup.workers("resize") == 1  # never below the minimum


def test_never_more_workers_than_partitions_and_broker_errors_change_nothing(fleet) -> None:
    make, clock, started, _ = fleet
    sup = make("resize=1..8", cooldown_s=0)
    for _ in range(10):
        clock.now += 1
        sup.observe(lag("resize", 10_000, partitions=3))
    assert sup.workers("resize") == 3
    sup.observe(GroupLag("darkroom.resize", 0.0, error="broker down"))
    assert sup.workers("resize") == 3


def test_fixed_stages_do_not_scale(fleet) -> None:
    make, clock, _, _ = fleet
    sup = make("ingest=2")
    sup.observe(lag("ingest", 10_000))
    clock.now += 100
    sup.observe(lag("ingest", 0))
    clock.now += 100
    sup.observe(lag("ingest", 0))
    assert sup.workers("ingest") == 2


def test_stop_sends_sigterm_then_sigkill_after_the_drain_bound(fleet) -> None:
    make, clock, started, tmp_path = fleet
    sup = make("resize=2")
    sup.stop()
    assert all(p.signals == [signal.SIGTERM] for p in started)
    started[0].code = 0  # drained in time
    clock.now += 21
    sup.tick()
    assert started[1].signals == [signal.SIGTERM, signal.SIGKILL]  # did not: killed
    sup.tick()
    assert sup.stopped and len(started) == 2  # nothing restarted while stopping
    sup.write_state(final=True)
    state = read_state(tmp_path / "state.json")
    assert state is not None and state.state == "stopped" and state.stages["resize"].workers == []
