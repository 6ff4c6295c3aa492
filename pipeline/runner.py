"""The stage runner: consume → process (thread pool) → produce → commit, at least once.

Commit steps, in order, for every message:
1. Received: its offset is recorded as pending for its partition.
2. Filtered on headers (`Stage.accepts`); a message the stage does not want is finished at once,
   without its body ever being read.
3. Queued behind earlier messages of the same key (per-key order, pipeline/key_order.py), then run
   on the thread pool (on the polling thread when `threads` = 0 or the stage is `inline`):
   `Stage.process` does the side effects (objects written) and returns the events to publish.
4. Its events are published and acknowledged by the broker (acks=all, idempotent producer).
5. Only then is the offset finished, which lets the next message of its key run. A transient failure
   instead schedules a retry with backoff and jitter (pipeline/retry_schedule.py) and pauses the
   partition meanwhile; a permanent failure (or exhausted retries) publishes a dead letter and, once
   that is acknowledged, finishes the offset. Outages (pipeline.errors.Unavailable: the broker did not
   acknowledge in time, the object store gave no answer) are retried at the capped backoff for as long
   as they last and do not use up the retry budget: the event is not at fault, and a dead letter
   for every event in flight during a long outage would lose nothing but help nobody.
6. Every `commit_interval_s`, on revocation and on shutdown, each partition commits up to its lowest
   unfinished offset. A crash before that redoes the work; idempotent outputs make the redo harmless.

All bookkeeping happens on the thread that polls, key order and retry schedule included; worker
threads only run jobs and report back through a queue, so no state here needs a lock. It is done per
consumed batch: the jobs a batch admits go to one shared ready queue, drained by at most `threads`
pool tasks (not one task and one future per message).

Two windows bound the work held: `max_in_flight` messages received and not yet handed to the
producer (queued, waiting for their key, or running), and `_ACK_WINDOW` × that many whose outputs
are produced and await the broker's acknowledgement. Waiting for acks costs no thread and little
memory, so a worker keeps reading while the broker confirms (with one window, a cheap stage made at
most max_in_flight events per acknowledgement round trip, bench/RESULTS.md), while a rebalance still
only has to drain `max_in_flight` messages of real work.

Observability: each processing attempt runs inside an OpenTelemetry span whose parent is the context
in the message's `traceparent` header (pipeline/spans.py; the span is current on the worker thread, so
the events the stage publishes carry it on, see pipeline/tracing.py); outcomes go to a
`RunnerObserver` (metrics) from the polling thread. Nothing is logged per message at INFO.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from opentelemetry.trace import Tracer

from pipeline.bounded import CallTimedOut, call_bounded, close_quietly
from pipeline.dead_letter import dead_letter
from pipeline.envelope import H_EVENT_TYPE, headers_dict, now_ms
from pipeline.errors import ErrorKind, is_outage
from pipeline.key_order import TP, KeyOrder
from pipeline.offsets import PartitionOffsets
from pipeline.progress import Progress, unwatched
from pipeline.publisher import Outgoing
from pipeline.retry import Backoff
from pipeline.retry_schedule import RetrySchedule
from pipeline.settings import WorkerSettings
from pipeline.spans import AttemptSpans
from pipeline.stage import Received, Stage
from pipeline.topics import TopicNames

log = logging.getLogger(__name__)


class ConsumerLike(Protocol):
    """The part of confluent_kafka.Consumer the runner uses."""

    def subscribe(self, topics: list[str], **callbacks: Any) -> None: ...
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]: ...
    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> Any: ...
    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    def close(self) -> None: ...


class PublisherLike(Protocol):
    """The part of Publisher the runner uses."""

    def produce(self, message: Outgoing, on_done: Callable[[Exception | None], None]) -> None: ...
    def close(self, timeout_s: float = 10.0) -> None: ...


class RunnerObserver(Protocol):
    """Outcomes of messages, reported on the polling thread (metrics implement it; must be cheap)."""

    def processed(self, event_type: str, seconds: float) -> None: ...
    def failed(self, event_type: str, kind: str, seconds: float) -> None: ...
    def retried(self, event_type: str) -> None: ...
    def dead_lettered(self, event_type: str) -> None: ...
    def skipped(self, event_type: str) -> None: ...


class _NoObserver:
    """The default observer: measures nothing."""

    def processed(self, event_type: str, seconds: float) -> None: ...
    def failed(self, event_type: str, kind: str, seconds: float) -> None: ...
    def retried(self, event_type: str) -> None: ...
    def dead_lettered(self, event_type: str) -> None: ...
    def skipped(self, event_type: str) -> None: ...


# Bound on a synchronous commit (at revocation and shutdown); one that does not answer is not
# committed, and the work is redone by the partition's next owner.
_COMMIT_TIMEOUT_S = 15.0

NO_EVENT_TYPE = "none"  # label of messages without an `eventType` header (e.g. raw storage notifications)
_ACK_WINDOW = 16  # messages awaiting acknowledgement, per slot of max_in_flight
_PRODUCED = object()  # reported on the done queue when a job's outputs go to the producer: it now awaits acks


@dataclass
class RunnerStats:
    """Counters of one runner, for logs, health and tests (plain ints: read from other threads as is)."""

    received: int = 0
    skipped: int = 0
    processed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    commits: int = 0
    in_flight: int = 0  # a gauge: messages received and not finished, as of the last loop iteration


@dataclass(eq=False)  # identity: jobs live in sets (awaiting acks)
class _Job:
    message: Received
    generation: int
    event_type: str = NO_EVENT_TYPE
    attempts: int = 0
    outages: int = 0  # of those attempts, failed for an outage: they do not count toward dead-lettering
    letter: Outgoing | None = None  # set once the message is to be dead-lettered instead of processed
    elapsed_s: float = 0.0  # of the last attempt, set by the worker thread before it reports back

    @property
    def tp(self) -> TP:
        return (self.message.topic, self.message.partition)


@dataclass
class _Partition:
    generation: int
    offsets: PartitionOffsets
    retrying: int = 0


class StageRunner:
    """Runs one stage as a member of the consumer group `darkroom.<stage>` until `stop()`."""

    def __init__(
        self,
        stage: Stage,
        consumer: ConsumerLike,
        publisher: PublisherLike,
        settings: WorkerSettings,
        clock: Callable[[], float] = time.monotonic,
        observer: RunnerObserver | None = None,
        tracer: Tracer | None = None,
        progress: Progress | None = None,
        names: TopicNames | None = None,
        group: str | None = None,
    ) -> None:
        self.stage = stage
        self._names = names or TopicNames()
        self._observer: RunnerObserver = observer if observer is not None else _NoObserver()
        self._spans = AttemptSpans(tracer, stage.name, group or f"darkroom.{stage.name}")
        self._consumer = consumer
        self._publisher = publisher
        self._settings = settings
        self._clock = clock
        self._pool = (
            ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix=f"{stage.name}-work")
            if settings.threads > 0 else None
        )
        # Cheap stages run on the polling thread: no hand-off per message (`Stage.inline`, or `threads` = 0).
        if getattr(stage, "inline", False) and self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        self._ready: deque[_Job] = deque()  # admitted jobs waiting for a pool thread (deque ops are thread-safe)
        self._awaiting: set[_Job] = set()  # jobs whose outputs are produced, waiting for acknowledgements
        self._done: queue.SimpleQueue[tuple[_Job, BaseException | object | None]] = queue.SimpleQueue()
        self._partitions: dict[TP, _Partition] = {}
        self._order: KeyOrder[_Job] = KeyOrder()
        backoff = Backoff(settings.retry_initial_backoff_s, settings.retry_max_backoff_s, settings.retry_max_attempts)
        self._retries: RetrySchedule[_Job] = RetrySchedule(backoff, clock)
        self._paused: set[TP] = set()
        self._backpressure = False
        self._full_since: float | None = None
        self._generations = itertools.count(1)
        self._stopping = threading.Event()
        self._last_commit = clock()
        self.stats = RunnerStats()
        self.assigned = threading.Event()  # set once partitions are assigned: lets callers await readiness
        self.heartbeat = clock()  # last time the polling loop went round
        # Liveness (pipeline/progress.py): the loop must go round, and running attempts must end.
        self._loop_beat = progress.track("poll loop") if progress is not None else unwatched()
        self._work_beat = progress.track(f"{stage.name} work") if progress is not None else unwatched()
        self._attempts_running = 0

    # -- public -----------------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until `stop()`, then drain in-flight work (bounded), commit and close."""
        self.stage.start()
        self._loop_beat.busy()
        self._consumer.subscribe(
            [self._names(t) for t in self.stage.topics],
            on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost,
        )
        try:
            while not self._stopping.is_set():
                self._step()
            self._drain(list(self._partitions))
            self._commit()
        finally:
            # close() revokes what is still assigned (on_revoke: drain, commit) and leaves the group;
            # with the coordinator gone it can wait forever, so it is bounded like the commits.
            close_quietly(self._consumer, self._settings.drain_timeout_s + _COMMIT_TIMEOUT_S + 10.0)
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._publisher.close()
            self.stage.close()
            self._loop_beat.idle()

    def stop(self) -> None:
        """Ask the runner to finish; safe from signal handlers and other threads."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called: the runner is draining and takes no new work."""
        return self._stopping.is_set()

    @property
    def assigned_partitions(self) -> int:
        """Partitions this worker owns now (0 before the first assignment and after losing them all)."""
        return len(self._partitions)

    @property
    def in_flight(self) -> int:
        """Messages received and not yet finished, across partitions."""
        return sum(p.offsets.in_flight for p in self._partitions.values())

    def _free(self, in_flight: int) -> int:
        """Messages the windows let in now: work held below max_in_flight, acks awaited below their window."""
        window = self._settings.max_in_flight
        awaiting = len(self._awaiting)
        return min(window - (in_flight - awaiting), window * (_ACK_WINDOW + 1) - in_flight)

    # -- the loop ---------------------------------------------------------------------------------

    def _step(self) -> None:
        """One round: read (steps 1-3), apply finished work (5), fire due retries, pause or resume, commit (6)."""
        now = self.heartbeat = self._clock()
        self._loop_beat.progressed()
        in_flight = self.stats.in_flight = self.in_flight
        free = self._free(in_flight)
        # Short waits while work runs, so finished work is committed and followed up promptly.
        timeout = 0.01 if in_flight else 0.2
        due = self._retries.next_due()
        if due is not None:
            timeout = max(0.0, min(timeout, due - now))
        if free > 0 or self._backpressure:
            self._full_since = None
            # Paused partitions return nothing here, but consuming keeps the member alive in the group.
            admitted = [job for msg in self._consumer.consume(num_messages=max(1, free), timeout=timeout)
                        if (job := self._on_message(msg)) is not None]
            self._submit_all(admitted)
            self._collect(block_s=0.0)
        else:
            # Window full: stop reading, but do not pause yet. The consumer keeps what it prefetched
            # (bounded by queued.max.messages.kbytes); pausing would drop it and cost a refetch.
            self._full_since = self._full_since or now
            self._collect(block_s=timeout)
        self._fire_retries()
        self._apply_pauses()
        if self._clock() - self._last_commit >= self._settings.commit_interval_s:
            self._commit(asynchronous=True)

    def _on_message(self, msg: Any) -> _Job | None:
        """Steps 1-3: record the offset, filter on headers, and return the job if its key is free (else it waits)."""
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return None
            if err.fatal():
                raise KafkaException(err)
            log.warning("%s: consumer error: %s", self.stage.name, err)
            return None
        tp = (msg.topic(), msg.partition())
        part = self._partitions.get(tp)
        if part is None:
            return None  # from a partition revoked meanwhile: its new owner reads it
        offset = msg.offset()
        part.offsets.received(offset)
        self.stats.received += 1
        raw_headers = msg.headers() or []
        headers = headers_dict(raw_headers)
        raw_type = headers.get(H_EVENT_TYPE)
        event_type = raw_type.decode(errors="replace") if raw_type else NO_EVENT_TYPE
        if not self.stage.accepts(headers):
            # Skipped from the headers alone: the body is never copied out of the consumer.
            part.offsets.finished(offset)
            self.stats.skipped += 1
            self._observer.skipped(event_type)
            return None
        received = Received(tp[0], tp[1], offset, msg.key(), msg.value(), list(raw_headers), msg.timestamp()[1])
        received.__dict__["headers_by_name"] = headers  # the cached property, already computed
        job = _Job(received, part.generation, event_type)
        return job if self._order.admit(job) else None

    def _submit(self, job: _Job) -> None:
        self._submit_all([job])

    def _submit_all(self, jobs: list[_Job]) -> None:
        """Run `jobs`: inline on the polling thread, or through the ready queue with one pool task per thread needed."""
        if not jobs:
            return
        self._attempts_running += len(jobs)
        self._work_beat.busy()
        if self._pool is None:
            for job in jobs:
                self._run(job)  # inline: cheap stages run on the polling thread, no hand-off
            return
        self._ready.extend(jobs)
        # A task drains the queue until it is empty, so `threads` tasks serve any batch; a surplus task
        # finds the queue empty and ends at once, which is what makes the hand-off race-free.
        for _ in range(min(len(jobs), self._settings.threads)):
            self._pool.submit(self._drain_ready)

    def _drain_ready(self) -> None:
        while True:
            try:
                job = self._ready.popleft()
            except IndexError:
                return
            self._run(job)

    def _run(self, job: _Job) -> None:
        """Steps 3-4: process a job, then report it once every output is acknowledged (or at the first failure).

        The thread is free as soon as the outputs are handed to the producer: acknowledgements
        arrive on the publisher's callback thread, so waiting for the broker costs no worker thread.
        """
        try:
            outputs = self._execute(job)
        except Exception as exc:  # noqa: BLE001 - every failure is classified, then retried or dead-lettered
            self._done.put((job, exc))
            return
        if not outputs:
            self._done.put((job, None))
            return
        if self._pool is None:
            self._awaiting.add(job)  # on the polling thread already
        else:
            self._done.put((job, _PRODUCED))  # before producing: it reaches the polling thread before the acks do
        if len(outputs) == 1:  # the common case: no counting, no lock
            self._publisher.produce(outputs[0], lambda error: self._done.put((job, error)))
            return
        pending = [len(outputs)]
        failure: list[Exception] = []
        lock = threading.Lock()

        def acknowledged(error: Exception | None) -> None:
            with lock:
                if error is not None and not failure:
                    failure.append(error)
                pending[0] -= 1
                last = pending[0] == 0
            if last:
                self._done.put((job, failure[0] if failure else None))

        for message in outputs:
            self._publisher.produce(message, acknowledged)

    def _execute(self, job: _Job) -> list[Outgoing]:
        """Runs the stage (inside a span, when tracing) and returns what to publish."""
        started = time.perf_counter()
        try:
            with self._spans.attempt(job.message, job.event_type, job.attempts + 1, job.letter is not None):
                return [job.letter] if job.letter is not None else self.stage.process(job.message)
        finally:
            job.elapsed_s = time.perf_counter() - started

    def _collect(self, block_s: float) -> None:
        """Apply finished jobs' results; waits up to `block_s` for the first one."""
        try:
            item = self._done.get(timeout=block_s) if block_s > 0 else self._done.get_nowait()
        except queue.Empty:
            return
        while True:
            job, error = item
            if error is _PRODUCED:
                self._awaiting.add(job)
            else:
                self._complete(job, error)  # type: ignore[arg-type]
            try:
                item = self._done.get_nowait()
            except queue.Empty:
                return

    def _complete(self, job: _Job, error: BaseException | None) -> None:
        """Step 5: finish the offset and free the key, or retry later, or turn the job into a dead letter."""
        self._awaiting.discard(job)
        self._attempts_running -= 1
        self._work_beat.progressed()  # an attempt ended, well or not: the stage is not stuck
        if self._attempts_running == 0:
            self._work_beat.idle()
        part = self._partitions.get(job.tp)
        if part is None or part.generation != job.generation:
            return  # abandoned on revocation: the partition's new owner redoes it
        if error is None:
            if job.letter is not None:
                self.stats.dead_lettered += 1
                self._observer.dead_lettered(job.event_type)
            else:
                self.stats.processed += 1
                self._observer.processed(job.event_type, job.elapsed_s)
            part.offsets.finished(job.message.offset)
            following = self._order.release(job)
            if following is not None:
                self._submit(following)
            return
        if job.letter is not None:
            # The dead-letter queue itself is unreachable: keep trying, never drop the message.
            self._schedule_retry(job, part, error)
            return
        kind = self.stage.classify(error)
        self._observer.failed(job.event_type, kind.value, job.elapsed_s)
        outage = kind is ErrorKind.TRANSIENT and is_outage(error)
        if outage or (kind is ErrorKind.TRANSIENT and not self._retries.exhausted(job.attempts - job.outages + 1)):
            job.outages += outage
            self._schedule_retry(job, part, error)
            return
        job.attempts += 1
        job.letter = dead_letter(job.message, self.stage.name, error, kind.value, job.attempts, now_ms())
        log.warning(
            "%s: dead-lettering %s[%d]@%d after %d attempt(s): %s: %s",
            self.stage.name, job.message.topic, job.message.partition, job.message.offset,
            job.attempts, type(error).__name__, error,
        )
        self._submit(job)

    def _schedule_retry(self, job: _Job, part: _Partition, error: BaseException) -> None:
        job.attempts += 1
        part.retrying += 1
        self.stats.retried += 1
        self._observer.retried(job.event_type)
        delay = self._retries.add(job, job.attempts)
        log.log(
            logging.WARNING if job.attempts == 1 else logging.DEBUG,
            "%s: retrying %s[%d]@%d in %.2fs (attempt %d): %s: %s",
            self.stage.name, job.message.topic, job.message.partition, job.message.offset,
            delay, job.attempts, type(error).__name__, error,
        )

    def _fire_retries(self) -> None:
        now = self._clock()
        while (job := self._retries.pop_due(now)) is not None:
            part = self._partitions.get(job.tp)
            if part is None or part.generation != job.generation:
                continue
            part.retrying -= 1
            self._submit(job)

    def _apply_pauses(self) -> None:
        """Pause partitions with a retry pending, and all of them once the window has stayed full for a while.

        A full window first just stops reading (see `_step`); only when it stays full (slow work, a
        long outage) are the partitions paused, so that consuming can go on to keep the member in the
        group, until half the window is free again. Pausing drops what the consumer prefetched, so
        pausing early or resuming at the first free slot would refetch from the broker all the time.
        """
        in_flight = self.in_flight
        if self._full_since is not None and self._clock() - self._full_since >= self._settings.pause_after_full_s:
            self._backpressure = True
        elif self._free(in_flight) >= self._settings.max_in_flight // 2:
            self._backpressure = False
        full = self._backpressure
        want = {tp for tp, p in self._partitions.items() if full or p.retrying > 0 or self._stopping.is_set()}
        to_pause, to_resume = want - self._paused, self._paused - want
        if to_pause:
            self._consumer.pause([TopicPartition(t, p) for t, p in to_pause])
        if to_resume:
            self._consumer.resume([TopicPartition(t, p) for t, p in to_resume])
        self._paused = want

    def _commit(self, only: list[TP] | None = None, asynchronous: bool = False, in_callback: bool = False) -> None:
        """Step 6: commit finished offsets. While running, asynchronously: a lost commit is covered by the next
        one or, at revocation and shutdown, by the synchronous commit, which resends every offset."""
        self._last_commit = self._clock()
        offsets = []
        for tp in only if only is not None else list(self._partitions):
            part = self._partitions.get(tp)
            offset = part.offsets.committable(resend=not asynchronous) if part else None
            if offset is not None:
                offsets.append(TopicPartition(tp[0], tp[1], offset))
        if not offsets:
            return
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            elif in_callback:
                # Inside a rebalance callback librdkafka serves a commit only from the callback's own
                # thread (from another one it waits for the callback to return: a deadlock, seen).
                # Unbounded here, then; a hang stops the poll loop, which /health/live reports.
                self._consumer.commit(offsets=offsets, asynchronous=False)
            else:
                # A synchronous commit waits for the coordinator, which may be gone: bounded.
                call_bounded(lambda: self._consumer.commit(offsets=offsets, asynchronous=False),
                             _COMMIT_TIMEOUT_S, "commit")
        except (KafkaException, CallTimedOut) as exc:
            # E.g. a rebalance in progress: the offsets stay pending and go with the next commit.
            log.warning("%s: commit failed, will retry: %s", self.stage.name, exc)
            return
        self.stats.commits += 1
        for tpo in offsets:
            self._partitions[(tpo.topic, tpo.partition)].offsets.committed = tpo.offset

    def _drain(self, tps: list[TP]) -> None:
        """Let in-flight work of `tps` finish, up to `drain_timeout_s`; what is left is abandoned uncommitted."""
        deadline = self._clock() + self._settings.drain_timeout_s
        wanted = set(tps)
        while self._clock() < deadline:
            self.heartbeat = self._clock()
            self._loop_beat.progressed()
            if not any(self._partitions[tp].offsets.in_flight for tp in wanted if tp in self._partitions):
                return
            self._collect(block_s=0.05)
            self._fire_retries()
        log.warning("%s: drain timed out after %.0fs; unfinished work is left for redelivery",
                    self.stage.name, self._settings.drain_timeout_s)

    # -- rebalancing ------------------------------------------------------------------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        for tpo in partitions:
            self._partitions[(tpo.topic, tpo.partition)] = _Partition(next(self._generations), PartitionOffsets())
        log.info("%s: assigned %s", self.stage.name, [(t.topic, t.partition) for t in partitions])
        self.assigned.set()

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        tps = [(t.topic, t.partition) for t in partitions]
        self._drain(tps)
        self._commit(only=tps, in_callback=True)
        log.info("%s: revoked %s (drained and committed)", self.stage.name, tps)
        self._forget(tps)

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, so committing would be wrong.
        self._forget([(t.topic, t.partition) for t in partitions])

    def _forget(self, tps: list[TP]) -> None:
        gone = set(tps)
        # librdkafka keeps a partition's pause flag after it leaves the assignment: one paused here (a
        # retry pending, as in a broker outage long enough to cost the group membership) came back
        # paused at the next assignment and was never read again. Resume it while it is still ours.
        stale = [TopicPartition(t, p) for t, p in gone & self._paused]
        if stale:
            try:
                self._consumer.resume(stale)
            except KafkaException as exc:
                log.warning("%s: could not resume %s before giving them up: %s", self.stage.name, stale, exc)
        for tp in gone:
            self._partitions.pop(tp, None)
        self._order.forget(gone)
        self._retries.drop(lambda job: job.tp in gone)
        self._awaiting = {job for job in self._awaiting if job.tp not in gone}
        self._paused -= gone
