"""The stage every image stage is: read a source once, make its renditions, announce each one.

A rendition stage consumes `files`. For `file.uploaded` it makes every rendition of its stage whose
source is `original`; for `file.processed{rendition=R}` every rendition of its stage whose source is
R (see pipeline/contracts/renditions.py). So the original is decoded once, for the largest rendition, and
smaller ones derive from it. Per event the source object is read from storage once, every
rendition is transformed (pure functions, bytes in, bytes out), then written at its deterministic
key and announced by one `file.processed` with a deterministic event id: a redelivery overwrites
the same objects and republishes the same ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from pydantic import BaseModel

from pipeline.contracts.events import (
    FILE_PROCESSED,
    FILE_UPLOADED,
    H_RENDITION,
    CaptureFacts,
    FileProcessed,
    FileUploaded,
)
from pipeline.contracts.renditions import (
    ORIGINAL,
    RenditionGraph,
)
from pipeline.contracts.topics import FILES
from pipeline.envelope import H_EVENT_TYPE, build_envelope, deterministic_id
from pipeline.errors import ErrorKind, PermanentError, default_classify
from pipeline.publisher import Outgoing
from pipeline.registry import Event, EventRegistry
from pipeline.stage import EventStage
from stages.imaging import ImageRejected, Rendition
from storage import ObjectNotFound, ObjectStore, StorageUnavailable, rendition_key

log = logging.getLogger(__name__)

# A rendition's transform with its parameters bound: source bytes in, encoded rendition out.
RenditionMaker = Callable[[bytes], Rendition]
# Reads an original's capture facts from its header: (bytes, original name) in, facts out.
FactsReader = Callable[[bytes, str], CaptureFacts | None]

_UPLOADED = FILE_UPLOADED.encode()
_PROCESSED = FILE_PROCESSED.encode()


class RenditionStage(EventStage):
    """Makes the renditions of one stage of the graph, from whichever source each declares."""

    topics = (FILES,)
    event_types = frozenset({FILE_UPLOADED, FILE_PROCESSED})

    def __init__(
        self,
        name: str,
        registry: EventRegistry,
        store: ObjectStore,
        graph: RenditionGraph,
        makers: Mapping[str, RenditionMaker],
        producer: str,
        facts: FactsReader | None = None,
    ) -> None:
        self.name = name
        super().__init__(registry)
        declared = set(graph.for_stage(name))
        if declared != set(makers):
            raise ValueError(f"stage {name!r}: transforms for {sorted(makers)} but the graph declares {sorted(declared)}")
        self._store = store
        self._makers = dict(makers)
        self._producer = producer
        self._facts = facts
        # Source -> renditions made from it, in declaration order (so outputs are published in a stable order).
        self._by_source: dict[str, list[str]] = {src: graph.made_from(src, name) for src in graph.sources_of(name)}
        self._source_headers = {src.encode() for src in self._by_source if src != ORIGINAL}
        if not self._by_source:
            log.warning("%s: the rendition graph declares no rendition for this stage; it will skip every event", name)

    def health_checks(self) -> dict[str, Callable[[], None]]:
        """Checks served at /health/<name> by the worker: the object store this stage reads and writes."""
        return {"storage": self._store.ping}

    @property
    def sources(self) -> dict[str, list[str]]:
        """Each source this stage consumes and the renditions it makes from it."""
        return {src: list(names) for src, names in self._by_source.items()}

    def accepts(self, headers: Mapping[str, bytes]) -> bool:
        event_type = headers.get(H_EVENT_TYPE)
        if event_type is None:
            return True  # decoding will dead-letter it with a reason
        if event_type == _UPLOADED:
            return ORIGINAL in self._by_source
        if event_type == _PROCESSED:
            rendition = headers.get(H_RENDITION)
            # No header (a producer that predates it): accepted, and `handle` reads the body instead.
            return rendition is None or rendition in self._source_headers
        return False

    def handle(self, event: Event[BaseModel], traceparent: str | None) -> list[Outgoing]:
        payload = event.payload
        if isinstance(payload, FileUploaded):
            source = ORIGINAL
        elif isinstance(payload, FileProcessed):
            source = payload.rendition
        else:  # pragma: no cover - event_types admits only the two above
            return []
        names = self._by_source.get(source, [])
        if not names:
            return []
        try:
            data = self._store.get(payload.key)
        except ObjectNotFound as exc:
            raise PermanentError(f"{source} {payload.key} no longer exists: deleted after it was announced?") from exc
        # Every transform before any write: a photo that cannot make one rendition leaves no partial set behind.
        made = [(name, self._makers[name](data)) for name in names]
        # Read once per original, from the header; every rendition made from the original carries them.
        # The photographer's own name when ingest carried it (any S3 client), else the key's last part.
        original_name = getattr(payload, "name", None) or payload.key.rsplit("/", 1)[-1]
        facts = self._facts(data, original_name) if source == ORIGINAL and self._facts else None
        out: list[Outgoing] = []
        for name, rendition in made:
            # Per version of the original: a new version gets new keys, so no cache serves the old image.
            key = rendition_key(payload.shoot_id, payload.file_id, name, rendition.ext, payload.version)
            # Same key on every redelivery: a redo overwrites, it never adds a second object.
            self._store.put(key, rendition.data, content_type=rendition.content_type)
            processed = FileProcessed(
                file_id=payload.file_id, shoot_id=payload.shoot_id, rendition=name, bucket=self._store.bucket,
                key=key, width=rendition.width, height=rendition.height, bytes=len(rendition.data),
                format=rendition.format, source_event_id=event.envelope.event_id, version=payload.version,
                facts=facts, placeholder=rendition.placeholder,
            )
            envelope = build_envelope(
                FILE_PROCESSED, "1.0.0", processed, subject=payload.file_id, producer=self._producer,
                event_id=deterministic_id(event.envelope.event_id, self.name, name), cause=event.envelope,
            )
            out.append(Outgoing.event(FILES, payload.file_id, envelope, traceparent, [(H_RENDITION, name.encode())]))
        return out

    def classify(self, exc: BaseException) -> ErrorKind:
        if isinstance(exc, StorageUnavailable):
            return ErrorKind.TRANSIENT
        if isinstance(exc, ImageRejected):
            return ErrorKind.PERMANENT
        return default_classify(exc)
