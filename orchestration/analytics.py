"""The analytics consumer: views and downloads of each gallery, per shoot and per photo.

Reads `galleries`: gallery.viewed (a gallery opened, or one photo in the viewer) and
file.downloaded. Each event id is counted once, in the same SQLite transaction that records it
(`OrchestrationStage`), so a redelivery after a crash counts nothing twice. The counters are a
projection of the topic: a replay from offset zero gives the same numbers.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from pydantic import BaseModel

from orchestration.consumer import Effects, OrchestrationStage
from orchestration.db import Database
from pipeline.contracts.events import FILE_DOWNLOADED, GALLERY_VIEWED, FileDownloaded, GalleryViewed
from pipeline.contracts.topics import GALLERIES
from pipeline.registry import Event, EventRegistry
from pipeline.settings import Settings

# Its own tables, created by the stage (not in db.py's schema): the read model belongs to this module.
SCHEMA = """
CREATE TABLE IF NOT EXISTS analytics_shoots (
    shoot_id TEXT PRIMARY KEY, views INTEGER NOT NULL DEFAULT 0, downloads INTEGER NOT NULL DEFAULT 0,
    last_at TEXT
);
CREATE TABLE IF NOT EXISTS analytics_photos (
    shoot_id TEXT NOT NULL, file_id TEXT NOT NULL, views INTEGER NOT NULL DEFAULT 0,
    downloads INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (shoot_id, file_id)
);
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the analytics tables if missing (idempotent)."""
    conn.executescript(SCHEMA)


class AnalyticsStage(OrchestrationStage):
    """Counts gallery views and downloads."""

    name = "analytics"
    topics = (GALLERIES,)
    event_types = frozenset({GALLERY_VIEWED, FILE_DOWNLOADED})

    def __init__(self, registry: EventRegistry, db: Database, settings: Settings) -> None:
        super().__init__(registry, db, settings)
        ensure_schema(db.conn())

    def apply(self, tx: sqlite3.Connection, event: Event[BaseModel], fx: Effects) -> None:
        payload, when = event.payload, event.envelope.occurred_at.isoformat()
        if isinstance(payload, GalleryViewed):
            if payload.file_id is None:
                self._shoot(tx, payload.shoot_id, when, views=1)
            else:
                self._photo(tx, payload.shoot_id, payload.file_id, views=1)
        elif isinstance(payload, FileDownloaded):
            self._shoot(tx, payload.shoot_id, when, downloads=1)
            self._photo(tx, payload.shoot_id, payload.file_id, downloads=1)

    @staticmethod
    def _shoot(tx: sqlite3.Connection, shoot_id: str, when: str, views: int = 0, downloads: int = 0) -> None:
        tx.execute("INSERT INTO analytics_shoots (shoot_id, views, downloads, last_at) VALUES (?,?,?,?)"
                   " ON CONFLICT (shoot_id) DO UPDATE SET views = views + excluded.views,"
                   " downloads = downloads + excluded.downloads, last_at = max(coalesce(last_at, ''), excluded.last_at)",
                   (shoot_id, views, downloads, when))

    @staticmethod
    def _photo(tx: sqlite3.Connection, shoot_id: str, file_id: str, views: int = 0, downloads: int = 0) -> None:
        tx.execute("INSERT INTO analytics_photos (shoot_id, file_id, views, downloads) VALUES (?,?,?,?)"
                   " ON CONFLICT (shoot_id, file_id) DO UPDATE SET views = views + excluded.views,"
                   " downloads = downloads + excluded.downloads", (shoot_id, file_id, views, downloads))


# -- the read model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShootAnalytics:
    """Views (gallery opened) and downloads of a shoot, and views/downloads per photo."""

    shoot_id: str
    views: int
    downloads: int
    photos: dict[str, tuple[int, int]]  # file id -> (views in the viewer, downloads)


def shoot_analytics(conn: sqlite3.Connection, shoot_id: str) -> ShootAnalytics:
    """The counters of one shoot (zeros when nothing was counted yet)."""
    ensure_schema(conn)
    row = conn.execute("SELECT views, downloads FROM analytics_shoots WHERE shoot_id = ?", (shoot_id,)).fetchone()
    photos = {r["file_id"]: (int(r["views"]), int(r["downloads"])) for r in conn.execute(
        "SELECT file_id, views, downloads FROM analytics_photos WHERE shoot_id = ? ORDER BY file_id", (shoot_id,))}
    return ShootAnalytics(shoot_id, int(row["views"]) if row else 0, int(row["downloads"]) if row else 0, photos)
