"""The lean event path: what the runner does per message, and what it no longer does."""

from __future__ import annotations

import random
import string
import threading
import uuid
from collections.abc import Callable

import pytest

from pipeline.contracts.events import FILE_UPLOADED, FileUploaded, default_registry
from pipeline.envelope import _EVENT_ID_NAMESPACE, build_envelope, deterministic_id
from pipeline.publisher import Outgoing
from pipeline.runner import _ACK_WINDOW, StageRunner
from pipeline.tracing import child_traceparent, trace_id_of
from tests.unit.fakes import FakeConsumer, FakeMessage, FakePublisher
from tests.unit.test_runner import SETTINGS, ScriptedStage, msg, start, stop


def test_deterministic_ids_are_exactly_uuid5() -> None:
    rng = random.Random(13)
    for _ in range(500):
        parts = ["".join(rng.choices(string.printable + "éß€", k=rng.randint(0, 40))) for _ in range(rng.randint(1, 4))]
        assert deterministic_id(*parts) == str(uuid.uuid5(_EVENT_ID_NAMESPACE, "\x1f".join(parts)))


def test_child_traceparents_keep_the_trace_and_get_fresh_span_ids() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    children = {child_traceparent(parent) for _ in range(100)}
    assert len(children) == 100 and {trace_id_of(c) for c in children} == {trace_id_of(parent)}
    fresh = child_traceparent(None)
    assert trace_id_of(fresh) not in (None, "0" * 32) and not fresh.split("-")[2] == "0" * 16


def test_an_envelope_the_framework_builds_is_not_validated_again_but_reads_back_valid() -> None:
    payload = FileUploaded(file_id="f1", shoot_id="s1", bucket="b", key="originals/shoots/s1/f1.jpg", size=1, etag="e")
    envelope = build_envelope(FILE_UPLOADED, "1.0.0", payload, subject="f1", producer="t", event_id="e1")
    event = default_registry().decode(envelope.to_bytes())  # what a consumer does: full validation
    assert event.envelope == envelope and event.payload == payload
    from datetime import datetime
    with pytest.raises(ValueError, match="time zone"):
        build_envelope(FILE_UPLOADED, "1.0.0", payload, subject="f1", producer="t", event_id="e1",
                       occurred_at=datetime(2026, 1, 1))


class _BodyGuard(FakeMessage):
    """A message whose body must not be read."""

    def value(self) -> bytes | None:
        raise AssertionError("the body of a skipped message was read")


def test_unhandled_events_are_skipped_from_the_headers_without_reading_the_body() -> None:
    stage = ScriptedStage()
    consumer = FakeConsumer([_BodyGuard("files", 0, 0, b"k", b"x", [("eventType", b"other.event")]), msg(0, 1, b"a")])
    publisher = FakePublisher(consumer.changed)
    runner, thread = start(stage, consumer, publisher)
    assert consumer.wait_committed({("files", 0): 2})
    stop(runner, thread)
    assert (runner.stats.skipped, runner.stats.processed) == (1, 1)


class _HeldPublisher(FakePublisher):
    """Takes every message at once but acknowledges only when released, like a slow broker."""

    def __init__(self, changed: threading.Condition) -> None:
        super().__init__(changed)
        self.held: list[Callable[[Exception | None], None]] = []

    def produce(self, message: Outgoing, on_done: Callable[[Exception | None], None]) -> None:
        with self.changed:
            self.published.append(message)
            self.held.append(on_done)
            self.changed.notify_all()

    def release(self) -> None:
        with self.changed:
            held, self.held = self.held, []
        for on_done in held:
            on_done(None)


@pytest.mark.parametrize("threads", [0, 2])
def test_work_awaiting_acknowledgement_does_not_hold_the_window(threads: int) -> None:
    stage = ScriptedStage()
    window = 2
    messages = [msg(p, o, b"v%d" % o) for p in range(3) for o in range(6)]  # 18 > the window of 2
    consumer = FakeConsumer(messages)
    publisher = _HeldPublisher(consumer.changed)
    settings = SETTINGS.model_copy(update={"max_in_flight": window, "threads": threads})
    runner, thread = start(stage, consumer, publisher, settings)
    with consumer.changed:  # every message is processed while no acknowledgement has come back
        assert consumer.changed.wait_for(lambda: len(publisher.published) == len(messages), 10)
    assert len(messages) <= window * (_ACK_WINDOW + 1)
    assert consumer.committed == {} or all(o <= 0 for o in consumer.committed.values())  # nothing durable: nothing committed
    publisher.release()
    assert consumer.wait_committed({("files", p): 6 for p in range(3)})
    stop(runner, thread)
    assert runner.stats.processed == len(messages)


def test_a_stage_that_says_it_is_inline_runs_on_the_polling_thread() -> None:
    class Inline(ScriptedStage):
        inline = True

        def __init__(self) -> None:
            super().__init__()
            self.threads: set[str] = set()

        def process(self, message):  # type: ignore[no-untyped-def]
            self.threads.add(threading.current_thread().name)
            return super().process(message)

    stage = Inline()
    consumer = FakeConsumer([msg(0, o, b"v") for o in range(5)])
    runner = StageRunner(stage, consumer, FakePublisher(consumer.changed), SETTINGS)  # threads=4 in the settings
    thread = threading.Thread(target=runner.run, name="polling", daemon=True)
    thread.start()
    assert consumer.wait_committed({("files", 0): 5})
    stop(runner, thread)
    assert stage.threads == {"polling"}
