"""The runner's commit, retry, dead-letter and ordering logic, with a fake handler and consumer."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest

from pipeline.dead_letter import DeadLetter
from pipeline.errors import ErrorKind, PermanentError, TransientError, default_classify
from pipeline.publisher import Outgoing
from pipeline.runner import StageRunner
from pipeline.settings import WorkerSettings
from pipeline.stage import Received
from tests.unit.fakes import FakeConsumer, FakeMessage, FakePublisher

SETTINGS = WorkerSettings(
    max_in_flight=8, threads=4, retry_max_attempts=3, retry_initial_backoff_s=0.01,
    retry_max_backoff_s=0.02, commit_interval_s=0.01, drain_timeout_s=5,
)


class ScriptedStage:
    """Does what each message's value says: ok, block until released, fail transiently N times, or fail."""

    name = "fake"
    topics = ("files",)

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[tuple[bytes | None, int]] = []
        self.order: list[bytes] = []
        self._failures: dict[int, int] = {}
        self._lock = threading.Lock()

    def accepts(self, headers: Mapping[str, bytes]) -> bool:
        return headers.get("eventType") != b"other.event"

    def process(self, message: Received) -> list[Outgoing]:
        with self._lock:
            self.calls.append((message.key, message.offset))
        value = message.value or b""
        if value == b"block":
            assert self.release.wait(10)
        elif value.startswith(b"flaky"):
            times = int(value.split(b":")[1])
            with self._lock:
                seen = self._failures.get(message.offset, 0)
                self._failures[message.offset] = seen + 1
            if seen < times:
                raise TransientError("storage is down")
        elif value == b"poison":
            raise PermanentError("not a photo")
        with self._lock:
            self.order.append(value)
        return [Outgoing("out", message.key, b"done:" + value)]

    def classify(self, exc: BaseException) -> ErrorKind:
        return default_classify(exc)

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def msg(partition: int, offset: int, value: bytes, key: bytes | None = None, event_type: bytes = b"x.y") -> FakeMessage:
    return FakeMessage("files", partition, offset, key if key is not None else b"k%d" % offset, value, [("eventType", event_type)])


def start(stage: ScriptedStage, consumer: FakeConsumer, publisher: FakePublisher, settings: WorkerSettings = SETTINGS):
    runner = StageRunner(stage, consumer, publisher, settings)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    return runner, thread


def stop(runner: StageRunner, thread: threading.Thread) -> None:
    runner.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_commits_only_up_to_lowest_unfinished_offset() -> None:
    stage = ScriptedStage()
    consumer = FakeConsumer([msg(0, 0, b"a"), msg(0, 1, b"block"), msg(0, 2, b"c"), msg(0, 3, b"d")])
    publisher = FakePublisher(consumer.changed)
    runner, thread = start(stage, consumer, publisher)
    assert consumer.wait_committed({("files", 0): 1})
    # 2 and 3 finish while 1 is blocked: the commit must not pass 1.
    with consumer.changed:
        consumer.changed.wait_for(lambda: sum(1 for o in publisher.published if o.value in (b"done:c", b"done:d")) == 2, 5)
    assert max(consumer.committed.values()) == 1
    stage.release.set()
    assert consumer.wait_committed({("files", 0): 4})
    stop(runner, thread)
    assert runner.stats.processed == 4


def test_transient_failure_is_retried_with_partition_paused_and_not_dead_lettered() -> None:
    stage = ScriptedStage()
    consumer = FakeConsumer([msg(0, 0, b"flaky:2"), msg(0, 1, b"b")])
    publisher = FakePublisher(consumer.changed)
    runner, thread = start(stage, consumer, publisher)
    assert consumer.wait_committed({("files", 0): 2})
    stop(runner, thread)
    assert ("files", 0) in consumer.ever_paused
    assert runner.stats.retried == 2 and runner.stats.dead_lettered == 0
    assert [o.topic for o in publisher.published] == ["out", "out"]


def test_exhausted_retries_and_permanent_errors_go_to_the_dead_letter_queue() -> None:
    stage = ScriptedStage()
    consumer = FakeConsumer([msg(0, 0, b"poison"), msg(0, 1, b"flaky:99"), msg(0, 2, b"fine")])
    publisher = FakePublisher(consumer.changed)
    runner, thread = start(stage, consumer, publisher)
    assert consumer.wait_committed({("files", 0): 3})
    stop(runner, thread)
    letters = [DeadLetter.from_message(o.key, o.value, o.headers) for o in publisher.published if o.topic == "dead-letter-queue"]
    by_offset = {d.offset: d for d in letters}
    assert by_offset[0].error_kind == "permanent" and by_offset[0].attempts == 1
    assert by_offset[0].error_message == "not a photo" and by_offset[0].value == b"poison"
    assert by_offset[0].error_class.endswith("PermanentError") and by_offset[0].stage == "fake"
    assert by_offset[1].error_kind == "transient" and by_offset[1].attempts == SETTINGS.retry_max_attempts
    assert ("eventType", b"x.y") in by_offset[0].original_headers
    assert b"done:fine" in [o.value for o in publisher.published]


def test_dead_letter_queue_outage_blocks_the_offset_instead_of_losing_it() -> None:
    stage = ScriptedStage()
    consumer = FakeConsumer([msg(0, 0, b"poison")])
    publisher = FakePublisher(consumer.changed)
    publisher.fail_next = 3  # the first dead-letter publishes fail
    runner, thread = start(stage, consumer, publisher)
    assert consumer.wait_committed({("files", 0): 1})
    stop(runner, thread)
    assert [o.topic for o in publisher.published] == ["dead-letter-queue"]


def test_same_key_runs_in_order_other_keys_in_parallel() -> None:
    stage = ScriptedStage()
    consumer = FakeConsumer([
        msg(0, 0, b"block", key=b"A"), msg(0, 1, b"A2", key=b"A"), msg(0, 2, b"B1", key=b"B"),
    ])
    publisher = FakePublisher(consumer.changed)
    runner, thread = start(stage, consumer, publisher)
    with consumer.changed:
        assert consumer.changed.wait_for(lambda: b"done:B1" in [o.value for o in publisher.published], 5)
    assert b"A2" not in stage.order  # waits behind the blocked A
    stage.release.set()
    assert consumer.wait_committed({("files", 0): 3})
    stop(runner, thread)
    assert stage.order.index(b"block") < stage.order.index(b"A2")


def test_unwanted_event_types_are_skipped_without_processing_and_committed() -> None:
    stage = ScriptedStage()
    consumer = FakeConsumer([msg(0, 0, b"a", event_type=b"other.event"), msg(0, 1, b"b")])
    publisher = FakePublisher(consumer.changed)
    runner, thread = start(stage, consumer, publisher)
    assert consumer.wait_committed({("files", 0): 2})
    stop(runner, thread)
    assert [offset for _, offset in stage.calls] == [1]
    assert runner.stats.skipped == 1


def test_stop_drains_in_flight_work_and_commits_it() -> None:
    stage = ScriptedStage()
    consumer = FakeConsumer([msg(0, 0, b"block"), msg(1, 0, b"x")])
    publisher = FakePublisher(consumer.changed)
    runner, thread = start(stage, consumer, publisher)
    assert consumer.wait_committed({("files", 1): 1})
    runner.stop()
    stage.release.set()  # the blocked job finishes only after the stop request
    thread.join(10)
    assert consumer.committed[("files", 0)] == 1
    assert consumer.closed and publisher.closed


def test_a_window_that_stays_full_pauses_every_partition() -> None:
    stage = ScriptedStage()
    settings = SETTINGS.model_copy(update={"max_in_flight": 2, "pause_after_full_s": 0.05})
    consumer = FakeConsumer([msg(0, 0, b"block"), msg(0, 1, b"block"), msg(1, 0, b"x"), msg(1, 1, b"y")])
    publisher = FakePublisher(consumer.changed)
    runner, thread = start(stage, consumer, publisher, settings)
    with consumer.changed:
        assert consumer.changed.wait_for(lambda: {("files", 0), ("files", 1)} <= consumer.paused, 5)
    stage.release.set()
    assert consumer.wait_committed({("files", 0): 2, ("files", 1): 2})
    stop(runner, thread)


@pytest.mark.parametrize("exc,kind", [
    (TransientError("x"), ErrorKind.TRANSIENT), (ConnectionError(), ErrorKind.TRANSIENT),
    (TimeoutError(), ErrorKind.TRANSIENT), (PermanentError("x"), ErrorKind.PERMANENT), (KeyError("bug"), ErrorKind.PERMANENT),
])
def test_default_classification(exc: BaseException, kind: ErrorKind) -> None:
    assert default_classify(exc) is kind


def test_inline_mode_processes_retries_and_dead_letters_on_the_polling_thread() -> None:
    stage = ScriptedStage()
    consumer = FakeConsumer([msg(0, 0, b"a"), msg(0, 1, b"flaky:1"), msg(0, 2, b"poison"), msg(1, 0, b"b")])
    publisher = FakePublisher(consumer.changed)
    runner, thread = start(stage, consumer, publisher, SETTINGS.model_copy(update={"threads": 0}))
    assert consumer.wait_committed({("files", 0): 3, ("files", 1): 1})
    stop(runner, thread)
    assert (runner.stats.processed, runner.stats.retried, runner.stats.dead_lettered) == (3, 1, 1)
    assert [o.topic for o in publisher.published].count("dead-letter-queue") == 1
