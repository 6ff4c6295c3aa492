"""Live progress for the studio page: a Kafka reader fanned out to server-sent-event subscribers.

One reader per web process follows `files`, `galleries` and `dead-letter-queue` from their end at
start-up (`read_committed`, in a consumer group of its own that never commits: a page shows what
happens while it is open; what happened before comes from the read models). Each message is
filtered on its `eventType` header before its body is parsed, turned into a small JSON item for
the shoot it belongs to, and handed to the asyncio queues of that shoot's open pages. A
`file.processed` item carries a short-lived presigned link to the rendition, so the thumbnail can
show the moment it exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from pipeline.contracts.events import (
    FILE_DOWNLOADED,
    FILE_PROCESSED,
    FILE_UPLOADED,
    GALLERY_UPDATED,
    GALLERY_VIEWED,
)
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES, GALLERIES
from pipeline.dead_letter import DeadLetter
from pipeline.dlq_tools import is_marker
from pipeline.envelope import H_EVENT_TYPE
from pipeline.kafka_config import consumer_config
from pipeline.settings import Settings
from storage import ObjectStore

log = logging.getLogger(__name__)

TOPICS = (FILES, GALLERIES, DEAD_LETTER_QUEUE)
WANTED = frozenset({FILE_UPLOADED, FILE_PROCESSED, GALLERY_UPDATED, GALLERY_VIEWED, FILE_DOWNLOADED})
_QUEUE_MAX = 1000  # items a slow page may lag behind before it is told to reload
_SHOOT_IN_KEY = re.compile(rb"originals/shoots/([A-Za-z0-9][A-Za-z0-9._-]{0,127})/")

Headers = list[tuple[str, bytes]]


def _event_type(headers: Headers | None) -> str | None:
    for name, value in headers or []:
        if name == H_EVENT_TYPE:
            return value.decode(errors="replace") if value is not None else None
    return None


def _data(value: bytes | None) -> dict[str, Any]:
    try:
        body = json.loads(value or b"{}")
    except ValueError:
        return {}
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}


def translate(topic: str, key: bytes | None, value: bytes | None, headers: Headers | None) -> dict[str, Any] | None:
    """The studio item of one message (with `shootId`), or None when the page has no use for it.

    A `file.processed` item names its object `key`; the feed swaps it for a presigned `url`.
    """
    if topic == DEAD_LETTER_QUEUE:
        if is_marker(headers):
            return None
        letter = DeadLetter.from_message(key, value, headers)
        data = _data(value)
        shoot = data.get("shootId")
        if not shoot:  # a raw store notification (storage.events): find the shoot in the object key
            found = _SHOOT_IN_KEY.search(value or b"")
            shoot = found.group(1).decode() if found else None
        return {"type": "dead-letter", "shootId": shoot, "fileId": data.get("fileId") or (key or b"").decode(errors="replace"),
                "stage": letter.stage, "errorClass": letter.error_class.rsplit(".", 1)[-1], "reason": letter.error_message}
    event_type = _event_type(headers)
    if event_type not in WANTED:
        return None
    data = _data(value)
    item: dict[str, Any] = {"type": event_type, "shootId": data.get("shootId"), "fileId": data.get("fileId")}
    if event_type == FILE_PROCESSED:
        item.update(rendition=data.get("rendition"), width=data.get("width"), height=data.get("height"),
                    format=data.get("format"), bytes=data.get("bytes"), key=data.get("key"))
    elif event_type == GALLERY_UPDATED:
        item.update(change=data.get("change"), photoCount=data.get("photoCount"))
    elif event_type == FILE_DOWNLOADED:
        item["rendition"] = data.get("rendition")
    return item


class LiveFeed:
    """The Kafka reader thread and its subscribers (asyncio queues, one per open page)."""

    def __init__(self, settings: Settings, store: ObjectStore,
                 consumer_factory: Callable[[dict[str, Any]], Any] = Consumer) -> None:
        self.settings = settings
        self.store = store
        self.group = f"darkroom.web.live.{uuid.uuid4().hex[:12]}"
        self._consumer_factory = consumer_factory
        self._subs: dict[asyncio.Queue[dict[str, Any]], str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- subscribers (event loop side) ------------------------------------------------------------

    def subscribe(self, shoot_id: str) -> asyncio.Queue[dict[str, Any]]:
        """A queue that receives the items of `shoot_id` from now on."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE_MAX)
        with self._lock:
            self._subs[queue] = shoot_id
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._subs.pop(queue, None)

    # -- the reader (its own thread) --------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading; items are delivered on `loop`."""
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="web-live-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _assign(self) -> Any:
        consumer = self._consumer_factory(consumer_config(self.settings, self.group))
        assignment = []
        for topic in TOPICS:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise RuntimeError(f"topic {topic}: {meta.error}")
            for p in meta.partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                assignment.append(TopicPartition(topic, p, high))
        consumer.assign(assignment)
        return consumer

    def _run(self) -> None:
        consumer = None
        while consumer is None and not self._stop.is_set():
            try:
                consumer = self._assign()
            except Exception as exc:  # the broker may come up after the web server: keep trying
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("live feed: cannot read %s yet (%s); retrying", ", ".join(TOPICS), self.error)
                self._stop.wait(2.0)
        if consumer is None:
            return
        self.error = None
        self.ready.set()
        self._broadcast({"type": "feed", "ready": True}, None)
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(200, timeout=0.5):
                    if msg.error() is None:
                        self._dispatch(msg.topic(), msg.key(), msg.value(), msg.headers())
        finally:
            consumer.close()

    def _dispatch(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None) -> None:
        with self._lock:
            watched = set(self._subs.values())
        if not watched:
            return
        item = translate(topic, key, value, headers)
        if item is None or item.get("shootId") not in watched:
            return
        object_key = item.pop("key", None)
        if object_key:
            item["url"] = self.store.presign_get(str(object_key), self.settings.web.link_expiry_s)
        self._broadcast(item, item["shootId"])

    def _broadcast(self, item: dict[str, Any], shoot_id: str | None) -> None:
        """Hand `item` to the queues of `shoot_id` (every queue when None), on the event loop."""
        loop = self._loop
        if loop is None:
            return
        with self._lock:
            queues = [q for q, s in self._subs.items() if shoot_id is None or s == shoot_id]
        for queue in queues:
            loop.call_soon_threadsafe(_offer, queue, item)


def _offer(queue: asyncio.Queue[dict[str, Any]], item: dict[str, Any]) -> None:
    try:
        queue.put_nowait(item)
    except asyncio.QueueFull:
        # The page fell _QUEUE_MAX items behind (a tab asleep): drop; it reloads the read model on reconnect.
        pass
