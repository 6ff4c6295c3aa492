"""CLI commands of the business flow (plugged in as `darkroom.commands` entry points)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import click
from confluent_kafka import KafkaException
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from orchestration.db import Database, db_path
from orchestration.gallery import gallery_photos
from orchestration.ids import event_id
from orchestration.mailbox import Mailbox, MailboxUnavailable
from orchestration.rebuild import TABLES, rebuild
from pipeline.contracts.events import (
    CaptureFacts,
    FileDeleted,
    InviteAccepted,
    ShootCompleted,
    ShootCreated,
    ShootDelivered,
    event_message,
)
from pipeline.envelope import deterministic_id
from pipeline.errors import PermanentError, TransientError
from pipeline.kafka_config import producer_config
from pipeline.publisher import Publisher
from pipeline.settings import Settings
from pipeline.topics import TopicNames
from storage import StorageError, open_store, original_key


def publish_event(settings: Settings, payload: BaseModel, event_id: str, correlation_id: str | None = None) -> str:
    """Publish one event and wait for the broker; returns the event id."""
    envelope, message = event_message(payload, event_id=event_id, producer=settings.producer_name,
                                      correlation_id=correlation_id)
    publisher = Publisher(producer_config(settings), settings.worker.delivery_timeout_s, TopicNames(settings.topics.prefix))
    try:
        publisher.publish_all([message])
    except (KafkaException, TransientError, PermanentError) as exc:
        raise click.ClickException(f"could not publish {envelope.event_type} to {settings.kafka.bootstrap_servers}: "
                                   f"{exc}. Is Kafka running? (`darkroom dev up`)") from exc
    finally:
        publisher.close()
    return envelope.event_id


def open_db(settings: Settings) -> Database:
    """The orchestration database (the read models) of these settings."""
    return Database(db_path(settings))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "shoot"


# -- shoots ---------------------------------------------------------------------------------------


@click.group("shoot")
def shoot_group() -> None:
    """Shoots: create one for a client, complete it, deliver it."""


@shoot_group.command("create")
@click.option("--title", required=True, help="What the shoot is, e.g. 'Wedding Anna & Ben'.")
@click.option("--client-email", required=True, help="The client, who gets invited to the gallery.")
@click.option("--id", "shoot_id", default=None, help="Shoot id (default: the title's slug plus a random suffix).")
@click.option("--photographer", default=None)
@click.pass_obj
def shoot_create(settings: Settings, title: str, client_email: str, shoot_id: str | None, photographer: str | None) -> None:
    """Publish shoot.created; the platform creates the client user and mails the invite."""
    shoot_id = shoot_id or f"{_slug(title)}-{uuid.uuid4().hex[:6]}"
    try:
        payload = ShootCreated(shoot_id=shoot_id, title=title, client_email=client_email, photographer=photographer)
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from exc
    # Deterministic: creating the same shoot id twice publishes the same event, applied once.
    published = publish_event(settings, payload, deterministic_id("shoot.created", shoot_id))
    click.echo(shoot_id)
    click.echo(f"shoot.created {published} (correlation id)", err=True)


@shoot_group.command("complete")
@click.argument("shoot_id")
@click.pass_obj
def shoot_complete(settings: Settings, shoot_id: str) -> None:
    """Publish shoot.completed: no more uploads; pending notifications go out now."""
    count = len(gallery_photos(open_db(settings).conn(), shoot_id))
    publish_event(settings, ShootCompleted(shoot_id=shoot_id, photo_count=count), deterministic_id("shoot.completed", shoot_id))
    click.echo(f"shoot {shoot_id} completed with {count} photo(s)")


@shoot_group.command("deliver")
@click.argument("shoot_id")
@click.option("--message", default=None, help="A note for the client.")
@click.pass_obj
def shoot_deliver(settings: Settings, shoot_id: str, message: str | None) -> None:
    """Publish shoot.delivered: the client is mailed."""
    publish_event(settings, ShootDelivered(shoot_id=shoot_id, message=message), deterministic_id("shoot.delivered", shoot_id))
    click.echo(f"shoot {shoot_id} delivered")


# -- invites --------------------------------------------------------------------------------------


@click.group("invites")
def invites_group() -> None:
    """Invites of clients to galleries."""


@invites_group.command("list")
@click.option("--shoot", "shoot_id", default=None, help="Only this shoot's invites.")
@click.pass_obj
def invites_list(settings: Settings, shoot_id: str | None) -> None:
    """Show invites: id, shoot, e-mail, status (created, sent, accepted)."""
    rows = open_db(settings).conn().execute(
        "SELECT invite_id, shoot_id, email, status, created_at, sent_at, accepted_at FROM invites"
        " WHERE ? IS NULL OR shoot_id = ? ORDER BY created_at", (shoot_id, shoot_id),
    ).fetchall()
    table = Table(title="invites")
    for column in ("invite", "shoot", "email", "status", "created", "sent", "accepted"):
        table.add_column(column)
    for r in rows:
        table.add_row(*(str(v or "-") for v in r))
    Console(width=200).print(table)


@click.group("invite")
def invite_group() -> None:
    """One invite."""


@invite_group.command("accept")
@click.argument("invite_id")
@click.pass_obj
def invite_accept(settings: Settings, invite_id: str) -> None:
    """Publish invite.accepted for INVITE_ID."""
    row = open_db(settings).conn().execute("SELECT * FROM invites WHERE invite_id = ?", (invite_id,)).fetchone()
    if row is None:
        raise click.ClickException(f"no invite {invite_id}; see `darkroom invites list`")
    payload = InviteAccepted(invite_id=invite_id, shoot_id=row["shoot_id"], user_id=row["user_id"])
    publish_event(settings, payload, event_id("invite.accepted", invite_id), correlation_id=row["correlation_id"])
    click.echo(f"invite {invite_id} accepted")


# -- galleries and photos -------------------------------------------------------------------------


@click.command("gallery")
@click.argument("shoot_id")
@click.pass_obj
def gallery_command(settings: Settings, shoot_id: str) -> None:
    """Print a shoot's gallery in the order the photos were shot: capture facts, renditions, sizes, links."""
    photos = gallery_photos(open_db(settings).conn(), shoot_id)
    store = open_store(settings.storage)
    table = Table(title=f"gallery {shoot_id}: {len(photos)} photo(s)")
    for column in ("photo", "file id", "taken", "camera", "exposure", "rendition", "size", "KB", "link"):
        table.add_column(column, overflow="fold")
    for photo in photos:
        taken, camera, exposure = describe_facts(photo.facts)
        for index, (name, key, width, height, size, _fmt) in enumerate(photo.renditions):
            # The photo's own columns once, on its first rendition's row.
            own = (photo.name, photo.file_id, taken, camera, exposure) if index == 0 else ("",) * 5
            table.add_row(*own, name, f"{width}×{height}", str(size // 1024),
                          store.presign_get(key, settings.orchestration.link_expiry_s))
    # Wide enough that a presigned link is never folded: a link broken over lines cannot be copied.
    Console(width=1000).print(table)


def describe_facts(facts: CaptureFacts | None) -> tuple[str, str, str]:
    """(taken, camera, exposure) as a gallery prints them, e.g. ("2026-05-01 14:03:22 +02:00",
    "Apple iPhone 15 Pro · <lens> · IMG_0042.HEIC 3024×4032", "6.86 mm f/1.8 1/250 ISO 64")."""
    if facts is None:
        return "", "", ""
    taken = ""
    if facts.captured_at:
        taken = facts.captured_at.replace("T", " ")
        if len(taken) > 19:
            taken = f"{taken[:19]} {taken[19:]}"
    camera_name = " ".join(x for x in (facts.make, facts.model) if x)
    if facts.make and facts.model and facts.model.lower().startswith(facts.make.lower()):
        camera_name = facts.model  # "Canon Canon EOS R5" reads badly
    camera = " · ".join(x for x in (camera_name, facts.lens, facts.original_name, f"{facts.width}×{facts.height}") if x)
    parts = [f"{facts.focal_length_mm:g} mm" if facts.focal_length_mm else "",
             f"f/{facts.aperture:g}" if facts.aperture else "", facts.shutter or "",
             f"ISO {facts.iso}" if facts.iso else ""]
    return taken, camera, " ".join(p for p in parts if p)


@click.group("photo")
def photo_group() -> None:
    """Photos of a shoot."""


@photo_group.command("delete")
@click.argument("file_id")
@click.option("--shoot", "shoot_id", required=True)
@click.option("--ext", default="jpg", show_default=True,
              help="Extension of the original, for a photo the gallery does not know the key of.")
@click.pass_obj
def photo_delete(settings: Settings, file_id: str, shoot_id: str, ext: str) -> None:
    """Delete the original and publish file.deleted (the gallery removes renditions and entry)."""
    row = open_db(settings).conn().execute("SELECT key, version FROM gallery_photos WHERE shoot_id = ? AND file_id = ?",
                                           (shoot_id, file_id)).fetchone()
    key = row["key"] if row is not None and row["key"] else original_key(shoot_id, file_id, ext)
    try:
        open_store(settings.storage).delete(key)
    except StorageError as exc:
        raise click.ClickException(f"could not delete the original: {exc}") from exc
    # Per version: deleting, uploading again and deleting again is a second deletion.
    version = row["version"] if row is not None else ""
    publish_event(settings, FileDeleted(file_id=file_id, shoot_id=shoot_id, key=key),
                  deterministic_id("file.deleted", shoot_id, file_id, version))
    click.echo(f"photo {file_id} deleted")


# -- state ----------------------------------------------------------------------------------------


@click.command("rebuild")
@click.argument("name", type=click.Choice(sorted(TABLES)))
@click.option("--into", type=click.Path(path_type=Path), default=None,
              help="Write the rebuilt state to this new database instead of replacing the live tables.")
@click.pass_obj
def rebuild_command(settings: Settings, name: str, into: Path | None) -> None:
    """Rebuild NAME's state by replaying its topics from offset zero (stop its workers first)."""
    applied = rebuild(name, settings, into)
    click.echo(f"{name}: rebuilt from {applied} event(s)" + (f" into {into}" if into else ""))


@click.group("mail")
def mail_group() -> None:
    """Mail delivered to Mailpit (the dev stack's mail server, or DARKROOM_ORCHESTRATION__MAIL_API_URL)."""


@mail_group.command("list")
@click.option("--limit", default=200, show_default=True, help="The latest N deliveries.")
@click.pass_obj
def mail_list(settings: Settings, limit: int) -> None:
    """Show delivered mails, oldest first: date, recipient, subject, Message-ID (read from Mailpit's API)."""
    try:
        mailbox = Mailbox.of(settings)
        mails = mailbox.messages(limit)
    except MailboxUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    table = Table(title=f"mail (web UI: {mailbox.base_url})")
    for column in ("date", "to", "subject", "message-id"):
        table.add_column(column)
    for mail in mails:
        table.add_row(mail.created, ", ".join(mail.to), mail.subject, mail.message_id)
    Console(width=200).print(table)
