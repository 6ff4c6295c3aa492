"""The gallery aggregator and its read model.

Reads `files`: file.uploaded (a photo is pending), file.processed (one rendition exists),
file.deleted (the photo and its renditions go). When every rendition the pipeline declares
(`pipeline.contracts.renditions`) exists for a photo, it becomes `complete` and exactly one gallery.updated
(change=added) is published on `galleries`, keyed by shoot id. Exactly one, because the status
change and the outbox row are one transaction with the idempotency key, and the event id is a
function of the file id.

State depends only on the events (timestamps are the events' `occurredAt`), so a replay of `files`
from offset zero rebuilds it identically (`darkroom rebuild gallery`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

from pydantic import BaseModel

from orchestration.consumer import Effects, OrchestrationStage
from orchestration.db import Database
from orchestration.ids import event_id
from pipeline.contracts.events import (
    FILE_DELETED,
    FILE_PROCESSED,
    FILE_UPLOADED,
    CaptureFacts,
    FileDeleted,
    FileProcessed,
    FileUploaded,
    GalleryRendition,
    GalleryUpdated,
)
from pipeline.contracts.topics import FILES
from pipeline.registry import Event, EventRegistry
from pipeline.settings import Settings
from storage import ObjectStore


class GalleryStage(OrchestrationStage):
    """Aggregates renditions per photo into each shoot's gallery."""

    name = "gallery"
    topics = (FILES,)
    event_types = frozenset({FILE_UPLOADED, FILE_PROCESSED, FILE_DELETED})

    def __init__(self, registry: EventRegistry, db: Database, settings: Settings,
                 store: ObjectStore | None, required: set[str]) -> None:
        super().__init__(registry, db, settings)
        self.store = store
        self.required = frozenset(required)

    def apply(self, tx: sqlite3.Connection, event: Event[BaseModel], fx: Effects) -> None:
        payload, env = event.payload, event.envelope
        when = env.occurred_at.isoformat()
        if isinstance(payload, FileUploaded):
            tx.execute("INSERT OR IGNORE INTO gallery_photos (file_id, shoot_id, status, correlation_id, updated_at)"
                       " VALUES (?,?,'pending',?,?)", (payload.file_id, payload.shoot_id, env.correlation_id, when))
        elif isinstance(payload, FileProcessed):
            self._rendition(tx, payload, event, fx, when)
        elif isinstance(payload, FileDeleted):
            self._delete(tx, payload, event, fx, when)

    def _rendition(self, tx: sqlite3.Connection, p: FileProcessed, event: Event[BaseModel], fx: Effects, when: str) -> None:
        env = event.envelope
        tx.execute("INSERT OR IGNORE INTO gallery_photos (file_id, shoot_id, status, correlation_id, updated_at)"
                   " VALUES (?,?,'pending',?,?)", (p.file_id, p.shoot_id, env.correlation_id, when))
        status = tx.execute("SELECT status FROM gallery_photos WHERE file_id = ?", (p.file_id,)).fetchone()["status"]
        if status == "deleted":
            return  # a late rendition of a deleted photo (its object was or will be removed)
        tx.execute(
            "INSERT OR REPLACE INTO gallery_renditions (file_id, rendition, shoot_id, key, width, height, bytes, format)"
            " VALUES (?,?,?,?,?,?,?,?)", (p.file_id, p.rendition, p.shoot_id, p.key, p.width, p.height, p.bytes, p.format),
        )
        _store_details(tx, p)
        if status != "pending":
            return  # already complete: a re-made rendition updates the row, not the gallery's membership
        have = {r["rendition"]: r for r in tx.execute(
            "SELECT * FROM gallery_renditions WHERE file_id = ?", (p.file_id,)).fetchall()}
        if not self.required <= set(have):
            return
        tx.execute("UPDATE gallery_photos SET status = 'complete', updated_at = ? WHERE file_id = ?", (when, p.file_id))
        renditions = [
            GalleryRendition(name=n, key=r["key"], width=r["width"], height=r["height"], bytes=r["bytes"], format=r["format"])
            for n, r in sorted(have.items()) if n in self.required
        ]
        facts, placeholder = _details(tx, p.file_id)
        fx.emit(
            GalleryUpdated(shoot_id=p.shoot_id, file_id=p.file_id, change="added", renditions=renditions,
                           photo_count=_count(tx, p.shoot_id), updated_at=env.occurred_at,
                           facts=facts, placeholder=placeholder),
            event_id=event_id("gallery.updated", p.file_id, "added"), cause=env,
        )

    def _delete(self, tx: sqlite3.Connection, p: FileDeleted, event: Event[BaseModel], fx: Effects, when: str) -> None:
        env = event.envelope
        row = tx.execute("SELECT status FROM gallery_photos WHERE file_id = ?", (p.file_id,)).fetchone()
        if row is not None and row["status"] == "deleted":
            return
        keys = [r["key"] for r in tx.execute("SELECT key FROM gallery_renditions WHERE file_id = ?", (p.file_id,))]
        if not fx.replay and self.store is not None:
            # Deleting is idempotent (a missing key is no error), so doing it inside the transaction
            # is safe: a failure rolls the state back and the retry deletes again.
            for key in keys:
                self.store.delete(key)
        tx.execute("DELETE FROM gallery_renditions WHERE file_id = ?", (p.file_id,))
        tx.execute("DELETE FROM gallery_photo_details WHERE file_id = ?", (p.file_id,))
        tx.execute("INSERT INTO gallery_photos (file_id, shoot_id, status, correlation_id, updated_at)"
                   " VALUES (?,?,'deleted',?,?) ON CONFLICT (file_id) DO UPDATE SET status = 'deleted', updated_at = ?",
                   (p.file_id, p.shoot_id, env.correlation_id, when, when))
        if row is not None and row["status"] == "complete":
            fx.emit(
                GalleryUpdated(shoot_id=p.shoot_id, file_id=p.file_id, change="removed",
                               photo_count=_count(tx, p.shoot_id), updated_at=env.occurred_at),
                event_id=event_id("gallery.updated", p.file_id, "removed"), cause=env,
            )


def _store_details(tx: sqlite3.Connection, p: FileProcessed) -> None:
    """Keep the capture facts and the placeholder a rendition brings (each comes with one rendition)."""
    if p.facts is None and p.placeholder is None:
        return
    tx.execute("INSERT OR IGNORE INTO gallery_photo_details (file_id, shoot_id) VALUES (?,?)", (p.file_id, p.shoot_id))
    if p.facts is not None:
        tx.execute("UPDATE gallery_photo_details SET facts = ?, captured_sort = ? WHERE file_id = ?",
                   (p.facts.model_dump_json(exclude_none=True), capture_sort_key(p.facts.captured_at), p.file_id))
    if p.placeholder is not None:
        tx.execute("UPDATE gallery_photo_details SET placeholder = ? WHERE file_id = ?", (p.placeholder, p.file_id))


def _details(tx: sqlite3.Connection, file_id: str) -> tuple[CaptureFacts | None, str | None]:
    row = tx.execute("SELECT facts, placeholder FROM gallery_photo_details WHERE file_id = ?", (file_id,)).fetchone()
    if row is None:
        return None, None
    return (CaptureFacts.model_validate_json(row["facts"]) if row["facts"] else None), row["placeholder"]


def capture_sort_key(captured_at: str | None) -> str | None:
    """A key that orders capture times: the UTC instant when the offset is known, else the local time
    as written (a camera without offset is taken to be in UTC: the best guess, and stable)."""
    if not captured_at:
        return None
    try:
        moment = datetime.fromisoformat(captured_at)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat()


def _count(tx: sqlite3.Connection, shoot_id: str) -> int:
    return int(tx.execute("SELECT count(*) FROM gallery_photos WHERE shoot_id = ? AND status = 'complete'",
                          (shoot_id,)).fetchone()[0])


# -- the read model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GalleryPhoto:
    """A complete photo of a gallery with its renditions (name, key, width, height, bytes, format),
    its capture facts and its BlurHash placeholder when the pipeline produced them."""

    file_id: str
    updated_at: str
    renditions: list[tuple[str, str, int, int, int, str]]
    facts: CaptureFacts | None = None
    placeholder: str | None = None


def gallery_photos(conn: sqlite3.Connection, shoot_id: str) -> list[GalleryPhoto]:
    """The complete photos of a shoot in the order they were shot; photos without a capture time
    last, by file id."""
    photos = conn.execute(
        "SELECT p.file_id, p.updated_at, d.facts, d.placeholder FROM gallery_photos p"
        " LEFT JOIN gallery_photo_details d ON d.file_id = p.file_id"
        " WHERE p.shoot_id = ? AND p.status = 'complete'"
        " ORDER BY d.captured_sort IS NULL, d.captured_sort, p.file_id", (shoot_id,)).fetchall()
    out = []
    for photo in photos:
        rows = conn.execute("SELECT rendition, key, width, height, bytes, format FROM gallery_renditions"
                            " WHERE file_id = ? ORDER BY rendition", (photo["file_id"],)).fetchall()
        facts = CaptureFacts.model_validate_json(photo["facts"]) if photo["facts"] else None
        out.append(GalleryPhoto(photo["file_id"], photo["updated_at"], [tuple(r) for r in rows],  # type: ignore[misc]
                                facts, photo["placeholder"]))
    return out


def gallery_snapshot(conn: sqlite3.Connection, shoot_id: str) -> dict[str, list[tuple[object, ...]]]:
    """Every gallery row of a shoot, sorted: two databases hold the same gallery iff their snapshots are equal."""
    return {
        "photos": [tuple(r) for r in conn.execute(
            "SELECT file_id, shoot_id, status, correlation_id, updated_at FROM gallery_photos WHERE shoot_id = ?"
            " ORDER BY file_id", (shoot_id,))],
        "renditions": [tuple(r) for r in conn.execute(
            "SELECT * FROM gallery_renditions WHERE shoot_id = ? ORDER BY file_id, rendition", (shoot_id,))],
        "details": [tuple(r) for r in conn.execute(
            "SELECT * FROM gallery_photo_details WHERE shoot_id = ? ORDER BY file_id", (shoot_id,))],
    }
