"""The resize stage: `file.uploaded` → the `web` rendition in storage → `file.processed`."""

from __future__ import annotations

from pydantic import BaseModel

from pipeline.envelope import build_envelope, deterministic_id
from pipeline.errors import ErrorKind, PermanentError, default_classify
from pipeline.events import FILE_PROCESSED, FILE_UPLOADED, FileProcessed, FileUploaded
from pipeline.publisher import Outgoing
from pipeline.registry import Event, EventRegistry
from pipeline.stage import EventStage
from pipeline.topics import FILES
from stages.imaging import ImageLimits, ImageRejected
from stages.resize.transform import ResizeParams, resize
from storage import ObjectNotFound, ObjectStore, StorageUnavailable, rendition_key


class ResizeStage(EventStage):
    """Makes one resized rendition of every uploaded original."""

    name = "resize"
    topics = (FILES,)
    event_types = frozenset({FILE_UPLOADED})

    def __init__(
        self,
        registry: EventRegistry,
        store: ObjectStore,
        params: ResizeParams,
        limits: ImageLimits,
        producer: str,
        rendition: str = "web",
    ) -> None:
        super().__init__(registry)
        self._store = store
        self._params = params
        self._limits = limits
        self._producer = producer
        self._rendition = rendition

    def handle(self, event: Event[BaseModel], traceparent: str | None) -> list[Outgoing]:
        uploaded = event.payload
        assert isinstance(uploaded, FileUploaded)
        try:
            original = self._store.get(uploaded.key)
        except ObjectNotFound as exc:
            raise PermanentError(f"original {uploaded.key} no longer exists: deleted after upload?") from exc
        out = resize(original, self._params, self._limits)
        key = rendition_key(uploaded.shoot_id, uploaded.file_id, self._rendition, "jpg")
        # Same key on every redelivery: a redo overwrites, it never adds a second object.
        self._store.put(key, out.data, content_type=out.content_type)
        processed = FileProcessed(
            file_id=uploaded.file_id, shoot_id=uploaded.shoot_id, rendition=self._rendition, bucket=self._store.bucket,
            key=key, width=out.width, height=out.height, bytes=len(out.data), format=out.format,
            source_event_id=event.envelope.event_id,
        )
        envelope = build_envelope(
            FILE_PROCESSED, "1.0.0", processed, subject=uploaded.file_id, producer=self._producer,
            event_id=deterministic_id(event.envelope.event_id, self.name, self._rendition), cause=event.envelope,
        )
        return [Outgoing.event(FILES, uploaded.file_id, envelope, traceparent)]

    def classify(self, exc: BaseException) -> ErrorKind:
        if isinstance(exc, StorageUnavailable):
            return ErrorKind.TRANSIENT
        if isinstance(exc, ImageRejected):
            return ErrorKind.PERMANENT
        return default_classify(exc)
