"""Business consumers without Kafka: the database transaction, idempotency keys, joins, batching, replay."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestration.db import Database
from orchestration.gallery import GalleryStage, gallery_snapshot
from orchestration.ids import invite_id_for, user_id_for
from orchestration.invite_sender import InviteSenderStage
from orchestration.invites import InvitesStage
from orchestration.notifier import NotifierStage
from orchestration.users import UsersStage
from pipeline.contracts.events import (
    FileDeleted,
    FileProcessed,
    FileUploaded,
    GalleryUpdated,
    ShootCreated,
    UserVerified,
    default_registry,
    event_message,
)
from pipeline.registry import Event
from pipeline.settings import Settings


def ev(payload: BaseModel, event_id: str, correlation_id: str = "corr") -> Event[BaseModel]:
    _, message = event_message(payload, event_id=event_id, producer="test", correlation_id=correlation_id)
    return default_registry().decode(message.value)


def outbox(db: Database, consumer: str) -> list[str]:
    rows = db.conn().execute("SELECT value FROM outbox WHERE consumer = ? ORDER BY seq", (consumer,)).fetchall()
    return [default_registry().decode(r["value"]).envelope.event_type for r in rows]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "o.sqlite")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(orchestration={"notify_interval_s": 5})  # type: ignore[arg-type]


SHOOT = ShootCreated(shoot_id="s1", title="Wedding", client_email="Anna@Example.com")


def test_a_new_client_becomes_a_created_then_verified_user_and_a_redelivery_changes_nothing(db: Database, settings: Settings) -> None:
    users = UsersStage(default_registry(), db, settings)
    created = ev(SHOOT, "e-shoot")
    assert users.apply_once(created) is True
    assert users.apply_once(created) is False  # redelivery: the idempotency key stops it
    assert outbox(db, "users") == ["user.created"]
    [row] = db.conn().execute("SELECT value FROM outbox WHERE consumer = 'users'").fetchall()
    user_created = default_registry().decode(row["value"])
    assert user_created.envelope.correlation_id == "corr" and user_created.envelope.causation_id == "e-shoot"
    users.apply_once(user_created)
    assert outbox(db, "users") == ["user.created", "user.verified"]
    # A second shoot for the same client finds the user: no second user.created.
    users.apply_once(ev(ShootCreated(shoot_id="s2", title="Party", client_email="anna@example.com"), "e-shoot-2"))
    assert outbox(db, "users") == ["user.created", "user.verified"]


@pytest.mark.parametrize("shoot_first", [True, False])
def test_the_invite_is_created_once_whichever_half_of_the_join_arrives_last(
    db: Database, settings: Settings, shoot_first: bool
) -> None:
    invites = InvitesStage(default_registry(), db, settings)
    user_id = user_id_for("anna@example.com")
    halves = [ev(SHOOT, "e-shoot", "corr-shoot"),
              ev(UserVerified(user_id=user_id, email="anna@example.com"), "e-verified", "corr-other")]
    for event in halves if shoot_first else halves[::-1]:
        invites.apply_once(event)
        invites.apply_once(event)
    [row] = db.conn().execute("SELECT value FROM outbox WHERE consumer = 'invites'").fetchall()
    created = default_registry().decode(row["value"])
    assert created.payload.invite_id == invite_id_for("s1", user_id)
    # The shoot started the chain: its correlation id and event are carried, whatever came last.
    assert (created.envelope.correlation_id, created.envelope.causation_id) == ("corr-shoot", "e-shoot")


def test_the_invite_sender_queues_one_mail_per_invite_with_a_deterministic_message_id(db: Database, settings: Settings) -> None:
    sender = InviteSenderStage(default_registry(), db, settings)
    from pipeline.contracts.events import InviteCreated

    invite = ev(InviteCreated(invite_id="inv-1", shoot_id="s1", user_id="u-1", email="a@example.com"), "e-inv")
    sender.apply_once(invite)
    # A second event with another id but the same invite (e.g. a replayed producer) queues no second mail.
    sender.apply_once(ev(InviteCreated(invite_id="inv-1", shoot_id="s1", user_id="u-1", email="a@example.com"), "e-inv-2"))
    rows = db.conn().execute("SELECT message_id, status FROM mail_outbox").fetchall()
    assert len(rows) == 1 and rows[0]["status"] == "pending"


def _processed(file_id: str, rendition: str, shoot: str = "s1") -> FileProcessed:
    return FileProcessed(file_id=file_id, shoot_id=shoot, rendition=rendition, bucket="b",
                         key=f"renditions/shoots/{shoot}/{file_id}/{rendition}.jpg", width=10, height=8, bytes=100,
                         format="jpeg", source_event_id="src")


def _gallery(db: Database, settings: Settings) -> GalleryStage:
    return GalleryStage(default_registry(), db, settings, None, {"web", "thumb"})


def test_gallery_updated_once_per_photo_when_every_declared_rendition_exists(db: Database, settings: Settings) -> None:
    gallery = _gallery(db, settings)
    gallery.apply_once(ev(FileUploaded(file_id="f1", shoot_id="s1", bucket="b", key="k", size=1, etag="e"), "up"))
    gallery.apply_once(ev(_processed("f1", "web"), "p-web"))
    assert outbox(db, "gallery") == []  # thumb missing
    gallery.apply_once(ev(_processed("f1", "thumb"), "p-thumb"))
    gallery.apply_once(ev(_processed("f1", "thumb"), "p-thumb"))  # redelivered
    gallery.apply_once(ev(_processed("f1", "web"), "p-web-again"))  # a rendition re-made later
    assert outbox(db, "gallery") == ["gallery.updated"]
    gallery.apply_once(ev(FileDeleted(file_id="f1", shoot_id="s1"), "del"))
    gallery.apply_once(ev(_processed("f1", "web"), "p-late"))  # late rendition of a deleted photo
    assert outbox(db, "gallery") == ["gallery.updated", "gallery.updated"]
    assert gallery_snapshot(db.conn(), "s1")["renditions"] == []


def test_replay_of_the_same_events_in_another_interleaving_gives_the_same_state(tmp_path: Path, settings: Settings) -> None:
    events = [ev(_processed(f"f{i}", r), f"p-{i}-{r}") for i in range(4) for r in ("web", "thumb")]
    events.append(ev(FileDeleted(file_id="f2", shoot_id="s1"), "del"))
    live, rebuilt = Database(tmp_path / "live.sqlite"), Database(tmp_path / "rebuilt.sqlite")
    for e in events:
        _gallery(live, settings).apply_once(e)
    # Per key (file) order is what Kafka keeps; across files the replay may interleave differently.
    by_file = sorted(events, key=lambda e: e.envelope.subject, reverse=True)
    for e in by_file:
        _gallery(rebuilt, settings).apply_once(e, replay=True)
    assert gallery_snapshot(live.conn(), "s1") == gallery_snapshot(rebuilt.conn(), "s1")
    assert outbox(rebuilt, "gallery") == []  # a replay publishes nothing


def test_the_notifier_mails_one_batch_per_shoot_per_interval(db: Database, settings: Settings) -> None:
    notifier = NotifierStage(default_registry(), db, settings)
    notifier.apply_once(ev(SHOOT, "e-shoot"))
    from datetime import UTC, datetime

    for i in range(50):
        notifier.apply_once(ev(GalleryUpdated(shoot_id="s1", file_id=f"f{i}", change="added", photo_count=i + 1,
                                              updated_at=datetime.now(UTC)), f"g{i}"))

    def tick(at: float) -> list[sqlite3.Row]:
        from orchestration.consumer import Effects

        with db.transaction() as tx:
            notifier.tick(tx, at, Effects(tx, notifier.name, "test", None, replay=False))
        return db.conn().execute("SELECT * FROM mail_outbox WHERE kind = 'gallery'").fetchall()

    import time

    assert tick(time.time()) == []  # not due yet
    [mail] = tick(time.time() + 6)
    assert mail["recipient"] == "anna@example.com" and "50 new photo(s)" in mail["subject"]
    assert len(tick(time.time() + 60)) == 1  # nothing new pending: no second mail


def test_building_a_stage_starts_no_relay_until_the_runner_starts_it(tmp_path: Path) -> None:
    # `fleet up` builds every stage to learn its topics: that must not take the relay's lock.
    from orchestration.workers import build_users

    settings = Settings(orchestration={"db_path": tmp_path / "o.sqlite"})  # type: ignore[arg-type]

    built = build_users(settings)
    relay = built.relay
    assert relay is not None and not relay._thread.is_alive()
    other = build_users(settings)
    other.start()
    try:
        assert other.relay is not None and other.relay._thread.is_alive()
    finally:
        other.close()
        built.close()
    assert other.relay._lock_file is None  # released on close, so another worker can take over
