"""The supervisor restarts a worker that runs but is not live, and only after consecutive failed probes."""

from __future__ import annotations

import signal
import socket
import time

from operations.fleet.state import LiveAnswer, worker_live
from operations.fleet.supervisor import LivenessMonitor
from pipeline.health import HealthChecks, HealthServer
from tests.unit.test_supervisor import fleet  # noqa: F401 - the fixture


def test_a_worker_not_live_for_three_probes_in_a_row_is_killed_and_restarted(fleet) -> None:  # noqa: F811
    make, clock, started, _ = fleet
    sup = make("gallery=1")
    [worker] = started
    assert sup.live_targets == [(worker.pid, 4242)]

    sup.observe_live(LiveAnswer(worker.pid, False, "gallery outbox relay: busy for 130s without progress"))
    sup.observe_live(LiveAnswer(worker.pid, False, "gallery outbox relay: busy for 135s without progress"))
    sup.observe_live(LiveAnswer(worker.pid, True, "ok"))  # a good answer starts the count over
    sup.observe_live(LiveAnswer(worker.pid, None, "connection refused"))  # not serving: counts neither way
    sup.observe_live(LiveAnswer(worker.pid, False, "r"))
    sup.observe_live(LiveAnswer(worker.pid, False, "r"))
    sup.tick()
    assert worker.signals == []

    sup.observe_live(LiveAnswer(worker.pid, False, "gallery outbox relay: busy for 150s without progress"))
    sup.tick()
    assert worker.signals == [signal.SIGKILL]
    assert any("not live for 3 probes (gallery outbox relay" in line for line in sup.history)
    assert sup.live_targets == [(worker.pid, 4242)]  # until reaped

    sup.tick()  # reaped like any exit...
    assert any("exited with -9" in line and "restarting in 1s" in line for line in sup.history)
    clock.now += 1  # ...and restarted after the usual backoff
    sup.tick()
    assert len(started) == 2 and started[1].stage == "gallery"
    assert sup.live_targets == [(started[1].pid, 4242)]
    # Answers about the old process do not count against the new one.
    for _ in range(5):
        sup.observe_live(LiveAnswer(worker.pid, False, "stale"))
    sup.tick()
    assert started[1].signals == []


def test_a_stopping_worker_is_not_probed_or_killed_for_liveness(fleet) -> None:  # noqa: F811
    make, _clock, started, _ = fleet
    sup = make("users=1")
    sup.stop()
    assert sup.live_targets == []
    for _ in range(5):
        sup.observe_live(LiveAnswer(started[0].pid, False, "stuck"))
    sup.tick()
    assert started[0].signals == [signal.SIGTERM]


def _serve(live_reason: str | None) -> HealthServer:
    return HealthServer("127.0.0.1", 0, checks=HealthChecks({}), live=lambda: live_reason, ready=lambda: None).start()


def test_worker_live_reads_200_503_and_a_closed_port() -> None:
    ok, stuck = _serve(None), _serve("poll loop: busy for 200s without progress (bound 120s)")
    try:
        assert worker_live("127.0.0.1", ok.port) == (True, "ok")
        assert worker_live("127.0.0.1", stuck.port) == (False, "poll loop: busy for 200s without progress (bound 120s)")
    finally:
        ok.close()
        stuck.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    live, reason = worker_live("127.0.0.1", port)  # nothing listens: a starting worker, not a stuck one
    assert live is None and reason


def test_a_worker_that_accepts_but_never_answers_is_not_live() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        live, reason = worker_live("127.0.0.1", sock.getsockname()[1], timeout_s=0.3)
    assert live is False and "no answer within 0.3s" in reason


def test_the_liveness_monitor_probes_every_target_and_hands_answers_over() -> None:
    probed: list[int] = []

    def probe(port: int) -> tuple[bool | None, str]:
        probed.append(port)
        return (port != 2, "stuck" if port == 2 else "ok")

    monitor = LivenessMonitor(lambda: [(101, 1), (102, 2)], probe, interval_s=0.01).start()
    deadline = time.monotonic() + 30
    answers: list[LiveAnswer] = []
    while len(answers) < 2 and time.monotonic() < deadline:
        answers += monitor.take()
        time.sleep(0.01)  # the monitor's own thread produces; nothing to await but its output
    monitor.close()
    assert LiveAnswer(101, True, "ok") in answers and LiveAnswer(102, False, "stuck") in answers
