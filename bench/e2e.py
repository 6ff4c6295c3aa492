"""One end-to-end run: upload photos to S3 at a controlled rate and follow each to its gallery.updated.

Timestamps are wall-clock milliseconds of this host (the broker, S3 server and workers share it):

- `put_done`: the PUT of the original returned, i.e. the object exists (the S3 event time, at
  millisecond precision: versitygw's `eventTime`, hence `file.uploaded`'s `occurredAt`, has whole
  seconds only, which would blur a one-second latency; it is recorded too, as `latency_occurred`);
- `uploaded`, `renditions[name]`, `gallery`: broker timestamps (CreateTime: when the producing
  worker handed the event to Kafka) of file.uploaded, each file.processed, and gallery.updated.

Latency of a photo = gallery − put_done. Throughput = photos complete / (last gallery − first PUT start).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Literal

from confluent_kafka import Consumer, TopicPartition
from pydantic import BaseModel, Field

from bench.stats import median, percentile
from pipeline.contracts.events import FILE_PROCESSED, FILE_UPLOADED, GALLERY_UPDATED
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES, GALLERIES
from pipeline.envelope import H_EVENT_TYPE
from pipeline.kafka_config import consumer_config
from pipeline.settings import Settings
from storage import ObjectStore
from storage.upload import upload_files

Progress = Callable[[int, int], None]  # (photos complete or dead, photos uploaded so far)


class PhotoTiming(BaseModel):
    """What happened to one photo, in epoch milliseconds."""

    file_id: str
    put_start: float
    put_done: float
    uploaded: float | None = None
    occurred_at: float | None = None  # file.uploaded's occurredAt (the S3 event time, whole seconds)
    renditions: dict[str, float] = Field(default_factory=dict)
    gallery: float | None = None
    dead_letter: str | None = None


class Percentiles(BaseModel):
    """Latency distribution over the photos of a run, in milliseconds (nearest rank)."""

    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: list[float]) -> Percentiles:
        return cls(p50=percentile(values, 50), p95=percentile(values, 95), p99=percentile(values, 99),
                   max=max(values) if values else None)


class E2ERun(BaseModel):
    """One end-to-end run of a fleet configuration."""

    workers: str
    mode: Literal["max", "fixed"]
    target_rate: float | None  # photos/s offered (fixed mode)
    shoot_id: str
    photos: int
    completed: int
    dead_lettered: int
    seconds: float  # first PUT start → last gallery.updated
    photos_per_s: float
    offered_per_s: float  # photos / (last PUT done − first PUT start): what the uploader achieved
    latency_ms: Percentiles  # gallery.updated − PUT done
    latency_occurred_ms: Percentiles  # gallery.updated − occurredAt (coarse: whole seconds)
    # Median per photo of each leg: PUT done → file.uploaded (ingest), → web (resize),
    # web → last of the other renditions (thumbnail, watermark), → gallery.updated (aggregator + outbox).
    legs_ms: dict[str, float | None]
    # CPU seconds each process used during the run (workers, Kafka, S3 server, the benchmark itself).
    cpu_s: dict[str, float] = Field(default_factory=dict)
    photo_timings: list[PhotoTiming]


class EventCollector:
    """Reads files, galleries and the DLQ from their current end, on a thread, keeping a shoot's events."""

    def __init__(self, settings: Settings, shoot_id: str, renditions: set[str], timeout_s: float = 30.0) -> None:
        self.shoot_id = shoot_id
        self.renditions = renditions
        self.photos: dict[str, PhotoTiming] = {}
        self._early: list[tuple[str, dict[str, object], float]] = []  # events of files not yet registered
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(consumer_config(settings, f"darkroom.bench.{uuid.uuid4().hex}"))
        assignment = []
        for topic in (FILES, GALLERIES, DEAD_LETTER_QUEUE):
            meta = self._consumer.list_topics(topic, timeout=timeout_s).topics[topic]
            for p in meta.partitions:
                _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                assignment.append(TopicPartition(topic, p, high))
        self._consumer.assign(assignment)
        self._thread = threading.Thread(target=self._loop, name="bench-collector", daemon=True)
        self._thread.start()

    def register(self, timing: PhotoTiming) -> None:
        """A photo was uploaded; apply events of it that arrived before this call."""
        with self._lock:
            self.photos[timing.file_id] = timing
            early, self._early = self._early, []
            for kind, data, ts in early:
                self._apply(kind, data, ts)

    def finished(self) -> int:
        """Photos that are in the gallery or dead-lettered."""
        with self._lock:
            return sum(1 for p in self.photos.values() if p.gallery is not None or p.dead_letter is not None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, timeout=0.2):
                if msg.error():
                    continue
                self._on_message(msg.topic(), dict(msg.headers() or []), msg.value() or b"", msg.timestamp()[1])

    def _on_message(self, topic: str, headers: dict[str, bytes], value: bytes, ts: float) -> None:
        if topic == DEAD_LETTER_QUEUE:
            if self.shoot_id.encode() in value:  # the original's key (in the record or envelope) names the shoot
                reason = headers.get("dlq.error.message", b"").decode(errors="replace")
                self._record("dead", {"raw": value.decode(errors="replace"), "reason": reason}, ts)
            return
        kind = headers.get(H_EVENT_TYPE, b"").decode()
        if kind not in (FILE_UPLOADED, FILE_PROCESSED, GALLERY_UPDATED):
            return
        envelope = json.loads(value)
        data = envelope.get("data", {})
        if data.get("shootId") != self.shoot_id:
            return
        if kind == FILE_UPLOADED:
            data = {**data, "occurredAt": envelope.get("occurredAt")}
        self._record(kind, data, ts)

    def _record(self, kind: str, data: dict[str, object], ts: float) -> None:
        with self._lock:
            if not self._apply(kind, data, ts):
                self._early.append((kind, data, ts))

    def _apply(self, kind: str, data: dict[str, object], ts: float) -> bool:
        """Apply one event to its photo; False if the photo is not registered yet."""
        if kind == "dead":
            photo = next((p for fid, p in self.photos.items() if fid in str(data["raw"])), None)
            if photo is None:
                return False
            photo.dead_letter = photo.dead_letter or str(data["reason"])
            return True
        photo = self.photos.get(str(data.get("fileId")))
        if photo is None:
            return False
        if kind == FILE_UPLOADED and photo.uploaded is None:
            photo.uploaded = ts
            photo.occurred_at = datetime.fromisoformat(str(data["occurredAt"])).timestamp() * 1000
        elif kind == FILE_PROCESSED:
            photo.renditions.setdefault(str(data["rendition"]), ts)
        elif kind == GALLERY_UPDATED and data.get("change") == "added" and photo.gallery is None:
            photo.gallery = ts
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def upload_paced(store: ObjectStore, paths: list[Path], shoot_id: str, rate: float | None,
                 on_uploaded: Callable[[PhotoTiming], None], parallel: int = 4) -> None:
    """Upload `paths` as originals of `shoot_id`: photo i at start + i/rate, or as fast as `parallel` PUTs go.

    Each photo goes through `storage.upload.upload_files`, the code behind `darkroom upload`.
    """
    start = time.time()

    def one(index: int, path: Path) -> None:
        if rate is not None:
            time.sleep(max(0.0, start + index / rate - time.time()))
        put_start = time.time() * 1000
        [result] = upload_files(store, [path], shoot_id, parallel=1)
        if not result.ok:
            raise RuntimeError(f"upload of {path} failed: {result.error}")
        on_uploaded(PhotoTiming(file_id=result.file_id, put_start=put_start, put_done=time.time() * 1000))

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="bench-upload") as pool:
        for future in [pool.submit(one, i, p) for i, p in enumerate(paths)]:
            future.result()


def _legs(photos: list[PhotoTiming], derived: set[str]) -> dict[str, float | None]:
    ingest, web, others, gallery = [], [], [], []
    for p in photos:
        if p.uploaded is None or p.gallery is None or "web" not in p.renditions:
            continue
        ingest.append(p.uploaded - p.put_done)
        web.append(p.renditions["web"] - p.uploaded)
        last = max([p.renditions[r] for r in derived if r in p.renditions], default=p.renditions["web"])
        others.append(last - p.renditions["web"])
        gallery.append(p.gallery - max(p.renditions.values()))
    return {"ingest": median(ingest), "web": median(web), "thumb+proof": median(others), "gallery": median(gallery)}


def summarise(workers: str, mode: Literal["max", "fixed"], rate: float | None, shoot_id: str,
              photos: list[PhotoTiming], renditions: set[str]) -> E2ERun:
    """The figures of one run from its photos' timings."""
    done = [p for p in photos if p.gallery is not None]
    first = min(p.put_start for p in photos)
    last = max((p.gallery for p in done), default=first)  # type: ignore[type-var]
    seconds = max(1e-3, (last - first) / 1000)
    offered = max(1e-3, (max(p.put_done for p in photos) - first) / 1000)
    return E2ERun(
        workers=workers, mode=mode, target_rate=rate, shoot_id=shoot_id, photos=len(photos), completed=len(done),
        dead_lettered=sum(1 for p in photos if p.dead_letter is not None), seconds=seconds,
        photos_per_s=len(done) / seconds, offered_per_s=len(photos) / offered,
        latency_ms=Percentiles.of([p.gallery - p.put_done for p in done]),  # type: ignore[operator]
        latency_occurred_ms=Percentiles.of([p.gallery - p.occurred_at for p in done  # type: ignore[operator]
                                            if p.occurred_at is not None]),
        legs_ms=_legs(done, renditions - {"web"}), photo_timings=sorted(photos, key=lambda p: p.put_start),
    )


def run_e2e(settings: Settings, store: ObjectStore, paths: list[Path], workers: str, renditions: set[str],
            rate: float | None = None, timeout_s: float = 600.0, progress: Progress | None = None) -> E2ERun:
    """Upload `paths` under a fresh shoot and wait until each photo is in the gallery or dead-lettered.

    Raises TimeoutError if some photo has neither after `timeout_s`.
    """
    shoot_id = f"bench-{uuid.uuid4().hex[:10]}"
    collector = EventCollector(settings, shoot_id, renditions)
    uploaded: list[PhotoTiming] = []
    try:
        def on_uploaded(timing: PhotoTiming) -> None:
            uploaded.append(timing)
            collector.register(timing)

        errors: list[BaseException] = []
        uploader = threading.Thread(target=_guarded, args=(errors, upload_paced, store, paths, shoot_id, rate, on_uploaded),
                                    name="bench-uploader", daemon=True)
        uploader.start()
        deadline = time.monotonic() + timeout_s
        while uploader.is_alive() or collector.finished() < len(uploaded):
            if errors:
                raise errors[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{collector.finished()}/{len(paths)} photos finished after {timeout_s:.0f}s "
                                   f"(shoot {shoot_id})")
            if progress is not None:
                progress(collector.finished(), len(paths))
            time.sleep(0.1)
        if errors:
            raise errors[0]
        if progress is not None:
            progress(len(paths), len(paths))
    finally:
        collector.close()
    return summarise(workers, "max" if rate is None else "fixed", rate, shoot_id, uploaded, renditions)


def _guarded(errors: list[BaseException], target: Callable[..., None], *args: object) -> None:
    """Run `target` on a thread, handing its exception to the waiting thread instead of printing it."""
    try:
        target(*args)
    except BaseException as exc:  # noqa: BLE001 (handed over and re-raised by the caller)
        errors.append(exc)
