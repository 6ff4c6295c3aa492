"""Event throughput: the framework's stage runner against a raw confluent-kafka loop, same run.

Both read the same N envelopes from one topic and write one event per input to another, with the
same guarantees where they can be compared (idempotent producer, acks=all, manual commits). The
raw loop is what a hand-rolled consumer would do: consume, produce, commit every batch.

    python -m bench.event_throughput --events 20000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import BaseModel

from pipeline.contracts.events import FILE_UPLOADED, FileUploaded, default_registry
from pipeline.envelope import build_envelope, deterministic_id
from pipeline.kafka_config import admin_config, consumer_config, producer_config
from pipeline.publisher import Outgoing, Publisher
from pipeline.registry import Event
from pipeline.runner import StageRunner
from pipeline.settings import Settings
from pipeline.stage import EventStage

PARTITIONS = 6


@dataclass(frozen=True)
class ThroughputResult:
    """Events per second of each contender in one run."""

    events: int
    raw_eps: float
    framework_eps: float

    @property
    def ratio(self) -> float:
        return self.framework_eps / self.raw_eps


class _PassThrough(EventStage):
    """Decodes each envelope and emits one caused event: the cheapest real stage."""

    name = "bench-pass"
    event_types = frozenset({FILE_UPLOADED})
    inline = True  # a cheap stage, as the business consumers are: run on the polling thread

    def __init__(self, topic_in: str, topic_out: str) -> None:
        self.topics = (topic_in,)
        self._out = topic_out
        super().__init__(default_registry())

    def handle(self, event: Event[BaseModel], traceparent: str | None) -> list[Outgoing]:
        # What a real stage does: one event caused by this one, with a deterministic id.
        source = event.envelope
        envelope = build_envelope(source.event_type, source.version, event.payload, subject=source.subject,
                                  producer=self.name, event_id=deterministic_id(source.event_id, "pass"), cause=source)
        return [Outgoing.event(self._out, envelope.subject, envelope, traceparent)]


def _make_topics(settings: Settings, names: list[str]) -> None:
    admin = AdminClient(admin_config(settings))
    for fut in admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        fut.result()


def _fill(settings: Settings, topic: str, count: int) -> None:
    producer = Producer(producer_config(settings))
    for i in range(count):
        payload = FileUploaded(file_id=f"f{i}", shoot_id="bench", bucket="b", key=f"originals/shoots/bench/f{i}.jpg",
                               size=1, etag="e")
        env = build_envelope(FILE_UPLOADED, "1.0.0", payload, subject=f"f{i}", producer="bench", event_id=f"e{i}")
        out = Outgoing.event(topic, f"f{i}", env)
        while True:
            try:
                producer.produce(out.topic, out.value, out.key, headers=out.headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)


def run_raw(settings: Settings, topic_in: str, topic_out: str, count: int) -> float:
    """A hand-rolled loop: consume a batch, produce each, flush, commit. Returns events/s."""
    # librdkafka stores each consumed offset itself; commit() then sends what was consumed.
    consumer = Consumer({**consumer_config(settings, f"bench-raw-{uuid.uuid4().hex}"), "enable.auto.offset.store": True})
    producer = Producer(producer_config(settings))
    consumer.subscribe([topic_in])
    done = 0
    start = None
    while done < count:
        batch = consumer.consume(500, timeout=1.0)
        if not batch:
            continue
        start = start or time.perf_counter()
        for msg in batch:
            if msg.error():
                continue
            producer.produce(topic_out, msg.value(), msg.key(), headers=msg.headers())
            done += 1
        producer.flush(30)  # durable before commit, as the framework guarantees
        consumer.commit(asynchronous=False)
    elapsed = time.perf_counter() - (start or time.perf_counter())
    consumer.close()
    return count / elapsed


def run_framework(settings: Settings, topic_in: str, topic_out: str, count: int) -> float:
    """The stage runner with a pass-through stage. Returns events/s from the first event to the last commit."""
    stage = _PassThrough(topic_in, topic_out)
    consumer = Consumer(consumer_config(settings, f"bench-fw-{uuid.uuid4().hex}"))
    runner = StageRunner(stage, consumer, Publisher(producer_config(settings)), settings.worker)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    # Polled every 5 ms, not every 1: a waking thread takes the GIL from the runner it measures.
    while runner.stats.received == 0:
        time.sleep(0.001)
    start = time.perf_counter()
    while runner.stats.processed < count:
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    runner.stop()
    thread.join(60)
    return count / elapsed


def measure(settings: Settings, events: int, runs: int,
            around_framework: Callable[[], AbstractContextManager[None]] | None = None) -> list[ThroughputResult]:
    """`runs` rounds, each on fresh topics, raw and framework alternating who goes first.

    `around_framework` wraps the first round's framework run (the harness profiles it with py-spy).
    """
    results = []
    for i in range(runs):
        wrap = around_framework if (around_framework is not None and i == 0) else nullcontext
        tag = uuid.uuid4().hex[:8]
        topic_in, out_raw, out_fw = f"bench.in.{tag}", f"bench.raw.{tag}", f"bench.fw.{tag}"
        _make_topics(settings, [topic_in, out_raw, out_fw])
        _fill(settings, topic_in, events)
        if i % 2 == 0:
            raw = run_raw(settings, topic_in, out_raw, events)
            with wrap():
                fw = run_framework(settings, topic_in, out_fw, events)
        else:
            with wrap():
                fw = run_framework(settings, topic_in, out_fw, events)
            raw = run_raw(settings, topic_in, out_raw, events)
        results.append(ThroughputResult(events, raw, fw))
    return results


def summarise(results: list[ThroughputResult]) -> dict[str, float]:
    """Medians across runs; the ratio is the median of per-run ratios."""
    return {
        "raw_eps": statistics.median(r.raw_eps for r in results),
        "framework_eps": statistics.median(r.framework_eps for r in results),
        "ratio": statistics.median(r.ratio for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="Also write the runs as JSON here (the harness reads it).")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy this process during the first framework run; collapsed stacks here, summary beside.")
    args = parser.parse_args()
    settings = Settings()
    profiled = []

    @contextmanager
    def profile_framework() -> Iterator[None]:
        from bench.profile import Profiler

        profiler = Profiler(os.getpid(), args.profile)
        profiler.start()
        try:
            yield
        finally:
            profiled.append(profiler.stop())

    results = measure(settings, args.events, args.runs, around_framework=profile_framework if args.profile else None)
    if args.json is not None:
        args.json.write_text(json.dumps({
            "runs": [{"raw_eps": r.raw_eps, "framework_eps": r.framework_eps, "ratio": r.ratio} for r in results],
            "profile": profiled[0].model_dump() if profiled else None}))
    for r in results:
        print(f"raw {r.raw_eps:9.0f} ev/s   framework {r.framework_eps:9.0f} ev/s   ratio {r.ratio:.2f}")
    s = summarise(results)
    print(f"median: raw {s['raw_eps']:.0f} ev/s, framework {s['framework_eps']:.0f} ev/s, ratio {s['ratio']:.2f}")


if __name__ == "__main__":
    main()
