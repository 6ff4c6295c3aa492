"""The gallery read model by shoot and version, without Kafka: re-edits, deletes, names, migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestration.db import Database, connect
from orchestration.gallery import GalleryStage, gallery_photos, gallery_snapshot
from pipeline.contracts.events import FileDeleted, FileProcessed, FileUploaded, default_registry, event_message
from pipeline.registry import Event
from pipeline.settings import Settings
from storage.keys import file_id_of, rendition_key, version_of

NAME = "IMG_0001 (1).JPG"


class DeletingStore:
    """The one store call the gallery makes: delete (of renditions it no longer shows)."""

    bucket = "b"

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete(self, key: str) -> None:
        self.deleted.append(key)


def ev(payload: BaseModel, event_id: str) -> Event[BaseModel]:
    _, message = event_message(payload, event_id=event_id, producer="test", correlation_id="corr")
    return default_registry().decode(message.value)


def uploaded(shoot: str, etag: str, put: str = "", name: str = NAME) -> FileUploaded:
    """One upload (PUT) of the photo: `put` tells apart two uploads of the same bytes."""
    key = f"originals/shoots/{shoot}/{name}"
    return FileUploaded(file_id=file_id_of(key), shoot_id=shoot, bucket="b", key=key, size=1, etag=etag, name=name,
                        version=version_of(f"{shoot}|{etag}|{put}"))


def processed(up: FileUploaded, rendition: str) -> FileProcessed:
    return FileProcessed(file_id=up.file_id, shoot_id=up.shoot_id, rendition=rendition, bucket="b",
                         key=rendition_key(up.shoot_id, up.file_id, rendition, "jpg", up.version), width=10, height=8,
                         bytes=100, format="jpeg", source_event_id=f"up-{up.etag}", version=up.version)


def published(db: Database) -> list[dict]:
    rows = db.conn().execute("SELECT value FROM outbox WHERE consumer = 'gallery' ORDER BY seq").fetchall()
    return [default_registry().decode(r["value"]).envelope.data for r in rows]


def complete(gallery: GalleryStage, up: FileUploaded) -> None:
    """One upload's events, with ids as the pipeline derives them: from the upload."""
    gallery.apply_once(ev(up, f"up-{up.version}"))
    for r in ("web", "thumb"):
        gallery.apply_once(ev(processed(up, r), f"p-{up.version}-{r}"))


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "o.sqlite")


@pytest.fixture
def store() -> DeletingStore:
    return DeletingStore()


@pytest.fixture
def gallery(db: Database, store: DeletingStore) -> GalleryStage:
    return GalleryStage(default_registry(), db, Settings(), store, {"web", "thumb"})  # type: ignore[arg-type]


def test_a_photo_is_shown_under_its_name(db: Database, gallery: GalleryStage) -> None:
    up = uploaded("s1", "e1")
    complete(gallery, up)
    [added] = published(db)
    assert (added["change"], added["name"], added["version"]) == ("added", NAME, uploaded("s1", "e1").version)
    [photo] = gallery_photos(db.conn(), "s1")
    assert (photo.name, photo.version) == (NAME, uploaded("s1", "e1").version)


def test_a_new_version_keeps_the_old_one_shown_until_complete_then_publishes_one_update(
    db: Database, gallery: GalleryStage, store: DeletingStore
) -> None:
    v1, v2 = uploaded("s1", "e1"), uploaded("s1", "e2")
    complete(gallery, v1)
    old_keys = {processed(v1, r).key for r in ("web", "thumb")}
    gallery.apply_once(ev(v2, "up-v2"))
    gallery.apply_once(ev(processed(v2, "web"), "p-v2-web"))
    [photo] = gallery_photos(db.conn(), "s1")
    assert {r[1] for r in photo.renditions} == old_keys, "half a new version is not shown"
    gallery.apply_once(ev(processed(v2, "thumb"), "p-v2-thumb"))
    gallery.apply_once(ev(processed(v2, "thumb"), "p-v2-thumb"))  # redelivered
    added, updated = published(db)
    assert (updated["change"], updated["version"], updated["photoCount"]) == ("updated", uploaded("s1", "e2").version, 1)
    new_keys = {r["key"] for r in updated["renditions"]}
    assert new_keys.isdisjoint(old_keys), "new URLs, so no cache serves the old image"
    [photo] = gallery_photos(db.conn(), "s1")
    assert {r[1] for r in photo.renditions} == new_keys
    assert set(store.deleted) == old_keys
    # A late rendition of the old version changes nothing and is removed.
    gallery.apply_once(ev(processed(v1, "web"), "p-v1-web-late"))
    assert len(published(db)) == 2 and {r[1] for r in gallery_photos(db.conn(), "s1")[0].renditions} == new_keys


def test_the_same_name_in_two_shoots_is_two_photos_in_two_galleries(db: Database, gallery: GalleryStage) -> None:
    a, b = uploaded("s1", "e1"), uploaded("s2", "e2")
    complete(gallery, a)
    complete(gallery, b)
    assert [(e["shootId"], e["change"]) for e in published(db)] == [("s1", "added"), ("s2", "added")]
    [pa], [pb] = gallery_photos(db.conn(), "s1"), gallery_photos(db.conn(), "s2")
    assert pa.file_id != pb.file_id and pa.name == pb.name == NAME
    assert all("/s1/" in r[1] for r in pa.renditions) and all("/s2/" in r[1] for r in pb.renditions)


def test_even_one_file_id_in_two_shoots_stays_two_rows(db: Database, gallery: GalleryStage) -> None:
    # File ids of before issue 11 were the name alone: events of that time still replay apart.
    for shoot in ("s1", "s2"):
        up = FileUploaded(file_id="big-24mp", shoot_id=shoot, bucket="b", key=f"originals/shoots/{shoot}/big-24mp.jpg",
                          size=1, etag="e")
        gallery.apply_once(ev(up, f"up-{shoot}"))
        for r in ("web", "thumb"):
            gallery.apply_once(ev(FileProcessed(file_id="big-24mp", shoot_id=shoot, rendition=r, bucket="b",
                                                key=f"renditions/shoots/{shoot}/big-24mp/{r}.jpg", width=1, height=1,
                                                bytes=1, format="jpeg", source_event_id="x"), f"p-{shoot}-{r}"))
    assert [e["shootId"] for e in published(db)] == ["s1", "s2"]
    for shoot in ("s1", "s2"):
        [photo] = gallery_photos(db.conn(), shoot)
        assert {r[1] for r in photo.renditions} == {f"renditions/shoots/{shoot}/big-24mp/{r}.jpg" for r in ("web", "thumb")}


def test_a_delete_removes_renditions_and_entry_once(db: Database, gallery: GalleryStage, store: DeletingStore) -> None:
    up = uploaded("s1", "e1")
    complete(gallery, up)
    gallery.apply_once(ev(FileDeleted(file_id=up.file_id, shoot_id="s1", key=up.key), "del-store"))
    gallery.apply_once(ev(FileDeleted(file_id=up.file_id, shoot_id="s1", key=up.key), "del-store"))  # redelivered
    gallery.apply_once(ev(FileDeleted(file_id=up.file_id, shoot_id="s1"), "del-cli"))  # and `darkroom photo delete`
    assert [e["change"] for e in published(db)] == ["added", "removed"]
    assert published(db)[1]["photoCount"] == 0 and gallery_photos(db.conn(), "s1") == []
    assert set(store.deleted) == {processed(up, r).key for r in ("web", "thumb")}
    # The same bytes uploaded again after the delete (a new PUT, so new event ids): the photo comes back.
    complete(gallery, uploaded("s1", "e1", put="#2"))
    assert [e["change"] for e in published(db)] == ["added", "removed", "added"]
    assert [p.name for p in gallery_photos(db.conn(), "s1")] == [NAME]


def test_a_version_put_back_is_shown_again_with_one_update_each_time(db: Database, gallery: GalleryStage) -> None:
    # The retouch undone, redone, undone: A's bytes, B's, A's again, each a new upload.
    puts = [uploaded("s1", "ea"), uploaded("s1", "eb"), uploaded("s1", "ea", "#2"), uploaded("s1", "eb", "#2"),
            uploaded("s1", "ea", "#3")]
    for up in puts:
        complete(gallery, up)
    assert [(e["change"], e["version"]) for e in published(db)] == [
        ("added", puts[0].version), *[("updated", up.version) for up in puts[1:]]]
    [photo] = gallery_photos(db.conn(), "s1")
    assert {r[1] for r in photo.renditions} == {processed(puts[-1], r).key for r in ("web", "thumb")}


def test_a_replay_rebuilds_the_same_state_and_deletes_nothing(tmp_path: Path, db: Database, gallery: GalleryStage) -> None:
    v1, v2 = uploaded("s1", "e1"), uploaded("s1", "e2")
    events = [ev(v1, "u1"), ev(processed(v1, "web"), "w1"), ev(processed(v1, "thumb"), "t1"),
              ev(v2, "u2"), ev(processed(v2, "web"), "w2"), ev(processed(v2, "thumb"), "t2"),
              ev(FileDeleted(file_id=v1.file_id, shoot_id="s1"), "d")]
    for e in events[:-1]:
        gallery.apply_once(e)
    store = DeletingStore()
    rebuilt = GalleryStage(default_registry(), Database(tmp_path / "r.sqlite"), Settings(), store, {"web", "thumb"})  # type: ignore[arg-type]
    for e in events[:-1]:
        rebuilt.apply_once(e, replay=True)
    assert gallery_snapshot(db.conn(), "s1") == gallery_snapshot(rebuilt.db.conn(), "s1")
    assert store.deleted == []


def test_an_old_read_model_keyed_by_file_id_alone_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE gallery_photos (file_id TEXT PRIMARY KEY, shoot_id TEXT NOT NULL, status TEXT NOT NULL,
            correlation_id TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE INDEX gallery_by_shoot ON gallery_photos (shoot_id, status);
        CREATE TABLE gallery_renditions (file_id TEXT NOT NULL, rendition TEXT NOT NULL, shoot_id TEXT NOT NULL,
            key TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, bytes INTEGER NOT NULL,
            format TEXT NOT NULL, PRIMARY KEY (file_id, rendition));
        INSERT INTO gallery_photos VALUES ('f1', 's1', 'complete', 'c', 't'), ('f2', 's1', 'pending', 'c', 't');
        INSERT INTO gallery_renditions VALUES ('f1', 'web', 's1', 'renditions/shoots/s1/f1/web.jpg', 4, 3, 9, 'jpeg');
    """)
    old.commit()
    old.close()
    conn = connect(path)
    [photo] = gallery_photos(conn, "s1")
    assert (photo.file_id, photo.name, photo.renditions) == ("f1", "f1", [("web", "renditions/shoots/s1/f1/web.jpg", 4, 3, 9, "jpeg")])
    keys = [r["name"] for r in conn.execute("PRAGMA table_info(gallery_photos)") if r["pk"]]
    assert sorted(keys) == ["file_id", "shoot_id"]
    conn.close()
    assert len(gallery_photos(connect(path), "s1")) == 1  # migrating is done once
