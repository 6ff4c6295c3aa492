"""The gallery aggregator and its read model.

Reads `files`: file.uploaded (a photo, or a new version of it, is pending), file.processed (one
rendition of one version exists), file.deleted (the photo and its renditions go). Rows are keyed by
(shoot id, file id). When every rendition the pipeline declares (`pipeline.contracts.renditions`)
exists for the latest version of a photo, it is shown and exactly one gallery.updated is published
on `galleries`, keyed by shoot id: change=added the first time, change=updated (with the version and
the new rendition keys) for a later version, whose predecessor's renditions are then removed.
Exactly one, because the state change and the outbox row are one transaction with the idempotency
key, and the event id is a function of (shoot, file, change, the event that made the change).

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
    """Aggregates renditions per photo and version into each shoot's gallery."""

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
            self._uploaded(tx, payload, fx, env.correlation_id, when)
        elif isinstance(payload, FileProcessed):
            self._rendition(tx, payload, event, fx, when)
        elif isinstance(payload, FileDeleted):
            self._delete(tx, payload, event, fx, when)

    def _uploaded(self, tx: sqlite3.Connection, p: FileUploaded, fx: Effects, correlation_id: str, when: str) -> None:
        version = p.version or ""
        row = _photo(tx, p.shoot_id, p.file_id)
        if row is None:
            tx.execute("INSERT INTO gallery_photos (file_id, shoot_id, status, correlation_id, updated_at, name, key, version)"
                       " VALUES (?,?,'pending',?,?,?,?,?)",
                       (p.file_id, p.shoot_id, correlation_id, when, p.name, p.key, version))
            return
        if row["status"] == "deleted":
            # New content under a key that was deleted: the photo starts over.
            tx.execute("UPDATE gallery_photos SET status = 'pending', shown_version = NULL, version = ?, name = ?, key = ?,"
                       " correlation_id = ?, updated_at = ? WHERE shoot_id = ? AND file_id = ?",
                       (version, p.name, p.key, correlation_id, when, p.shoot_id, p.file_id))
            return
        # A new version: it is built beside the one the gallery shows, which stays until the new one is complete.
        tx.execute("UPDATE gallery_photos SET version = ?, name = COALESCE(?, name), key = ? WHERE shoot_id = ? AND file_id = ?",
                   (version, p.name, p.key, p.shoot_id, p.file_id))
        stale = [r["key"] for r in tx.execute(
            "SELECT key FROM gallery_renditions WHERE shoot_id = ? AND file_id = ? AND version NOT IN (?, ?)",
            (p.shoot_id, p.file_id, version, row["shown_version"] or ""))]
        self._remove_objects(stale, fx)
        tx.execute("DELETE FROM gallery_renditions WHERE shoot_id = ? AND file_id = ? AND version NOT IN (?, ?)",
                   (p.shoot_id, p.file_id, version, row["shown_version"] or ""))

    def _rendition(self, tx: sqlite3.Connection, p: FileProcessed, event: Event[BaseModel], fx: Effects, when: str) -> None:
        env = event.envelope
        version = p.version or ""
        tx.execute("INSERT OR IGNORE INTO gallery_photos (file_id, shoot_id, status, correlation_id, updated_at, version)"
                   " VALUES (?,?,'pending',?,?,?)", (p.file_id, p.shoot_id, env.correlation_id, when, version))
        row = _photo(tx, p.shoot_id, p.file_id)
        assert row is not None
        if row["status"] == "deleted" or version not in (row["version"], row["shown_version"]):
            # A late rendition of a deleted photo or of a superseded version: nothing shows it.
            self._remove_objects([p.key], fx)
            return
        tx.execute(
            "INSERT OR REPLACE INTO gallery_renditions (file_id, rendition, shoot_id, key, width, height, bytes, format, version)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (p.file_id, p.rendition, p.shoot_id, p.key, p.width, p.height, p.bytes, p.format, version),
        )
        _store_details(tx, p)
        if row["shown_version"] == version:
            return  # already complete: a re-made rendition updates the row, not the gallery's membership
        have = {r["rendition"]: r for r in tx.execute(
            "SELECT * FROM gallery_renditions WHERE shoot_id = ? AND file_id = ? AND version = ?",
            (p.shoot_id, p.file_id, version)).fetchall()}
        if not self.required <= set(have):
            return
        change = "added" if row["status"] == "pending" else "updated"
        replaced = row["shown_version"]
        tx.execute("UPDATE gallery_photos SET status = 'complete', shown_version = ?, updated_at = ?"
                   " WHERE shoot_id = ? AND file_id = ?", (version, when, p.shoot_id, p.file_id))
        if replaced is not None:
            old = [r["key"] for r in tx.execute(
                "SELECT key FROM gallery_renditions WHERE shoot_id = ? AND file_id = ? AND version = ?",
                (p.shoot_id, p.file_id, replaced))]
            self._remove_objects(old, fx)
            tx.execute("DELETE FROM gallery_renditions WHERE shoot_id = ? AND file_id = ? AND version = ?",
                       (p.shoot_id, p.file_id, replaced))
        renditions = [
            GalleryRendition(name=n, key=r["key"], width=r["width"], height=r["height"], bytes=r["bytes"], format=r["format"])
            for n, r in sorted(have.items()) if n in self.required
        ]
        facts, placeholder = _details(tx, p.shoot_id, p.file_id)
        fx.emit(
            GalleryUpdated(shoot_id=p.shoot_id, file_id=p.file_id, change=change, renditions=renditions,
                           photo_count=_count(tx, p.shoot_id), updated_at=env.occurred_at,
                           name=row["name"], version=p.version, facts=facts, placeholder=placeholder),
            event_id=_gallery_event_id(p.shoot_id, p.file_id, change, env.event_id), cause=env,
        )

    def _delete(self, tx: sqlite3.Connection, p: FileDeleted, event: Event[BaseModel], fx: Effects, when: str) -> None:
        env = event.envelope
        row = _photo(tx, p.shoot_id, p.file_id)
        if row is not None and row["status"] == "deleted":
            return  # deleted twice (the store's notification and `darkroom photo delete`, or a redelivery)
        keys = [r["key"] for r in tx.execute("SELECT key FROM gallery_renditions WHERE shoot_id = ? AND file_id = ?",
                                             (p.shoot_id, p.file_id))]
        self._remove_objects(keys, fx)
        tx.execute("DELETE FROM gallery_renditions WHERE shoot_id = ? AND file_id = ?", (p.shoot_id, p.file_id))
        tx.execute("DELETE FROM gallery_photo_details WHERE shoot_id = ? AND file_id = ?", (p.shoot_id, p.file_id))
        tx.execute("INSERT INTO gallery_photos (file_id, shoot_id, status, correlation_id, updated_at, key)"
                   " VALUES (?,?,'deleted',?,?,?) ON CONFLICT (shoot_id, file_id) DO UPDATE"
                   " SET status = 'deleted', shown_version = NULL, updated_at = ?",
                   (p.file_id, p.shoot_id, env.correlation_id, when, p.key, when))
        if row is not None and row["status"] == "complete":
            fx.emit(
                GalleryUpdated(shoot_id=p.shoot_id, file_id=p.file_id, change="removed",
                               photo_count=_count(tx, p.shoot_id), updated_at=env.occurred_at,
                               name=row["name"], version=row["shown_version"] or None),
                event_id=_gallery_event_id(p.shoot_id, p.file_id, "removed", env.event_id), cause=env,
            )

    def _remove_objects(self, keys: list[str], fx: Effects) -> None:
        # Deleting is idempotent (a missing key is no error), so doing it inside the transaction
        # is safe: a failure rolls the state back and the retry deletes again. Never in a replay.
        if fx.replay or self.store is None:
            return
        for key in keys:
            self.store.delete(key)


def _photo(tx: sqlite3.Connection, shoot_id: str, file_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = tx.execute("SELECT * FROM gallery_photos WHERE shoot_id = ? AND file_id = ?",
                                         (shoot_id, file_id)).fetchone()
    return row


def _gallery_event_id(shoot_id: str, file_id: str, change: str, cause_id: str) -> str:
    # Of the event that made the change: a redelivery of it is stopped before (by the idempotency key),
    # while the same change made again (a version put back, a photo uploaded again after its delete)
    # is a new gallery.updated. With the shoot: before issue 11 a file id could be the same in two
    # shoots, and the outbox keeps one row per event id, so the second shoot's photo was never announced.
    return event_id("gallery.updated", shoot_id, file_id, change, cause_id)


def _store_details(tx: sqlite3.Connection, p: FileProcessed) -> None:
    """Keep the capture facts and the placeholder a rendition brings (each comes with one rendition)."""
    if p.facts is None and p.placeholder is None:
        return
    where = (p.shoot_id, p.file_id)
    tx.execute("INSERT OR IGNORE INTO gallery_photo_details (shoot_id, file_id) VALUES (?,?)", where)
    if p.facts is not None:
        tx.execute("UPDATE gallery_photo_details SET facts = ?, captured_sort = ? WHERE shoot_id = ? AND file_id = ?",
                   (p.facts.model_dump_json(exclude_none=True), capture_sort_key(p.facts.captured_at), *where))
    if p.placeholder is not None:
        tx.execute("UPDATE gallery_photo_details SET placeholder = ? WHERE shoot_id = ? AND file_id = ?",
                   (p.placeholder, *where))


def _details(tx: sqlite3.Connection, shoot_id: str, file_id: str) -> tuple[CaptureFacts | None, str | None]:
    row = tx.execute("SELECT facts, placeholder FROM gallery_photo_details WHERE shoot_id = ? AND file_id = ?",
                     (shoot_id, file_id)).fetchone()
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
    name: str = ""  # the file name under the shoot (NFC); the file id for photos of before names were kept
    version: str | None = None
    facts: CaptureFacts | None = None
    placeholder: str | None = None


def gallery_photos(conn: sqlite3.Connection, shoot_id: str) -> list[GalleryPhoto]:
    """The complete photos of a shoot, with the renditions of the version shown, in the order they were
    shot; photos without a capture time last, by name."""
    photos = conn.execute(
        "SELECT p.file_id, p.updated_at, p.name, p.shown_version, d.facts, d.placeholder FROM gallery_photos p"
        " LEFT JOIN gallery_photo_details d ON d.shoot_id = p.shoot_id AND d.file_id = p.file_id"
        " WHERE p.shoot_id = ? AND p.status = 'complete'"
        " ORDER BY d.captured_sort IS NULL, d.captured_sort, COALESCE(p.name, p.file_id), p.file_id",
        (shoot_id,)).fetchall()
    out = []
    for photo in photos:
        rows = conn.execute("SELECT rendition, key, width, height, bytes, format FROM gallery_renditions"
                            " WHERE shoot_id = ? AND file_id = ? AND version = ? ORDER BY rendition",
                            (shoot_id, photo["file_id"], photo["shown_version"] or "")).fetchall()
        facts = CaptureFacts.model_validate_json(photo["facts"]) if photo["facts"] else None
        out.append(GalleryPhoto(photo["file_id"], photo["updated_at"], [tuple(r) for r in rows],  # type: ignore[misc]
                                photo["name"] or photo["file_id"], photo["shown_version"] or None,
                                facts, photo["placeholder"]))
    return out


def gallery_snapshot(conn: sqlite3.Connection, shoot_id: str) -> dict[str, list[tuple[object, ...]]]:
    """Every gallery row of a shoot, sorted: two databases hold the same gallery iff their snapshots are equal."""
    return {
        "photos": [tuple(r) for r in conn.execute(
            "SELECT file_id, shoot_id, status, correlation_id, updated_at, name, key, version, shown_version"
            " FROM gallery_photos WHERE shoot_id = ? ORDER BY file_id", (shoot_id,))],
        "renditions": [tuple(r) for r in conn.execute(
            "SELECT * FROM gallery_renditions WHERE shoot_id = ? ORDER BY file_id, version, rendition", (shoot_id,))],
        "details": [tuple(r) for r in conn.execute(
            "SELECT * FROM gallery_photo_details WHERE shoot_id = ? ORDER BY file_id", (shoot_id,))],
    }
