"""The orchestration database: one embedded SQLite file holding every business consumer's state.

Why SQLite: the consumers' state (users, invites, the gallery read model, rendition progress) is a
projection of the topics, rebuilt by replay, so it needs transactions and a file, not a server.
Every worker process of every consumer opens the same file; WAL mode lets readers run beside the
one writer, and `BEGIN IMMEDIATE` serialises writers, which the outbox relies on (its sequence
numbers are assigned in commit order).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from pipeline.settings import Settings

# No ";" inside comments here: _migrate_gallery splits this on it.
_GALLERY_SCHEMA = """
-- The gallery read model, by (shoot, file): a photo is `pending` until every declared rendition of
-- its latest `version` exists, then `complete`, showing `shown_version` until a newer version is
-- complete too. Version '' = made before versions existed (storage.keys.rendition_key).
CREATE TABLE IF NOT EXISTS gallery_photos (
    file_id TEXT NOT NULL, shoot_id TEXT NOT NULL, status TEXT NOT NULL,
    correlation_id TEXT NOT NULL, updated_at TEXT NOT NULL,
    name TEXT, key TEXT, version TEXT NOT NULL DEFAULT '', shown_version TEXT,
    PRIMARY KEY (shoot_id, file_id)
);
CREATE INDEX IF NOT EXISTS gallery_by_shoot ON gallery_photos (shoot_id, status);
CREATE TABLE IF NOT EXISTS gallery_renditions (
    file_id TEXT NOT NULL, rendition TEXT NOT NULL, shoot_id TEXT NOT NULL, key TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, bytes INTEGER NOT NULL, format TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (shoot_id, file_id, version, rendition)
);
-- Capture facts (JSON of the file.processed `facts`) and the placeholder of a gallery photo. The
-- sort key orders a gallery by when photos were shot (UTC when the camera knew its offset).
CREATE TABLE IF NOT EXISTS gallery_photo_details (
    file_id TEXT NOT NULL, shoot_id TEXT NOT NULL, facts TEXT, captured_sort TEXT, placeholder TEXT,
    PRIMARY KEY (shoot_id, file_id)
);
"""

_SCHEMA = _GALLERY_SCHEMA + """
-- Idempotency keys: an event id is recorded in the same transaction as the state it changed.
CREATE TABLE IF NOT EXISTS processed (
    consumer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (consumer, event_id)
);
-- Events to publish, written with the state; the relay publishes them in a Kafka transaction.
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, consumer TEXT NOT NULL, event_id TEXT NOT NULL,
    topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL, headers TEXT NOT NULL,
    published INTEGER NOT NULL DEFAULT 0, UNIQUE (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (consumer, published, seq);
-- Mails to send; the Message-ID is deterministic, so a resend is recognisable as the same mail.
CREATE TABLE IF NOT EXISTS mail_outbox (
    message_id TEXT PRIMARY KEY, consumer TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL,
    correlation_id TEXT NOT NULL, cause_event_id TEXT NOT NULL, traceparent TEXT,
    recipient TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, sent_at TEXT
);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, role TEXT NOT NULL, display_name TEXT,
    status TEXT NOT NULL, correlation_id TEXT NOT NULL, created_at TEXT NOT NULL, verified_at TEXT
);
-- The invites consumer's view of shoots and verified users: the two halves of the invite join.
CREATE TABLE IF NOT EXISTS invite_shoots (
    shoot_id TEXT PRIMARY KEY, title TEXT NOT NULL, client_email TEXT NOT NULL, user_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL, event_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS invite_users (
    user_id TEXT PRIMARY KEY, email TEXT NOT NULL, verified_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS invites (
    invite_id TEXT PRIMARY KEY, shoot_id TEXT NOT NULL, user_id TEXT NOT NULL, email TEXT NOT NULL,
    status TEXT NOT NULL, correlation_id TEXT NOT NULL, created_at TEXT NOT NULL,
    sent_at TEXT, message_id TEXT, accepted_at TEXT, UNIQUE (shoot_id, user_id)
);
-- The notifier's view: who the client of a shoot is, and gallery changes not yet mailed.
CREATE TABLE IF NOT EXISTS notify_shoots (
    shoot_id TEXT PRIMARY KEY, title TEXT NOT NULL, client_email TEXT NOT NULL, correlation_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_pending (
    shoot_id TEXT NOT NULL, file_id TEXT NOT NULL, first_seen REAL NOT NULL, batch INTEGER,
    PRIMARY KEY (shoot_id, file_id)
);
"""


def db_path(settings: Settings) -> Path:
    """Where the database lives: the setting, or `orchestration.sqlite` in the dev data dir."""
    path = settings.orchestration.db_path or settings.dev.data_dir / "orchestration.sqlite"
    return path.expanduser().resolve()


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database; autocommit mode, transactions are explicit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so the write lock is taken up front
    # and two writers never both read a half-state and then race (e.g. the two halves of a join).
    conn = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a committed idempotency key must survive a power cut
    conn.execute("PRAGMA busy_timeout=60000")
    _migrate_gallery(conn)
    conn.executescript(_SCHEMA)
    return conn


def _migrate_gallery(conn: sqlite3.Connection) -> None:
    """Move a gallery read model keyed by file id alone (before issue 11) to (shoot, file, version) keys.

    Rows are copied as they are, with version '' (the unversioned rendition keys they point at), and
    shown_version '' for complete photos, so existing galleries keep showing. Rows that two shoots
    shared under one file id cannot be told apart here: `darkroom rebuild gallery` replays `files`
    into the new tables, which separates them (the events always carried the shoot).
    """
    columns = {r[1] for r in conn.execute("PRAGMA table_info(gallery_photos)")}
    if not columns or "shown_version" in columns:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if "shown_version" not in {r[1] for r in conn.execute("PRAGMA table_info(gallery_photos)")}:
            conn.execute("ALTER TABLE gallery_photos RENAME TO gallery_photos_v0")
            conn.execute("ALTER TABLE gallery_renditions RENAME TO gallery_renditions_v0")
            conn.execute("DROP INDEX IF EXISTS gallery_by_shoot")
            for statement in _GALLERY_SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO gallery_photos (file_id, shoot_id, status, correlation_id, updated_at, version, shown_version)"
                " SELECT file_id, shoot_id, status, correlation_id, updated_at, '',"
                " CASE status WHEN 'complete' THEN '' END FROM gallery_photos_v0")
            conn.execute("INSERT INTO gallery_renditions (file_id, rendition, shoot_id, key, width, height, bytes, format)"
                         " SELECT file_id, rendition, shoot_id, key, width, height, bytes, format FROM gallery_renditions_v0")
            conn.execute("DROP TABLE gallery_photos_v0")
            conn.execute("DROP TABLE gallery_renditions_v0")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: commits on success, rolls back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Database:
    """One connection per thread (a SQLite connection carries one transaction at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        connect(path).close()  # create the schema once, up front

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
        return conn

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction on this thread's connection."""
        return transaction(self.conn())
