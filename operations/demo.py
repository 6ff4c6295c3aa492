"""`darkroom demo`: the main job on one machine, from nothing to a delivered gallery.

Starts the local stack and the whole fleet (`darkroom fleet up`, every stage), creates a shoot for a
client (who gets an invite by mail), uploads photos (samples made on the spot if none are given),
prints every rendition and gallery update as it arrives, then shows the gallery and writes it as an
HTML page with presigned links.
"""

from __future__ import annotations

import html
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from operations.devstack import DevStack, StackError, client_env
from operations.samples import write_samples
from orchestration.commands import open_db, publish_event
from orchestration.gallery import GalleryPhoto, gallery_photos
from orchestration.gallery_links import gallery_url
from orchestration.mailbox import Mailbox
from pipeline.contracts.events import (
    FILE_PROCESSED,
    GALLERY_UPDATED,
    INVITE_SENT,
    ShootCompleted,
    ShootCreated,
)
from pipeline.contracts.renditions import PipelineConfigError, load_rendition_graph
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES, GALLERIES, INVITES
from pipeline.envelope import deterministic_id
from pipeline.settings import Settings
from pipeline.watch import TopicWatcher
from storage import ObjectStore, StorageError, open_store
from storage.upload import upload_files
from web.cli import studio_url

# Every stage of the product, one worker each; resize scales to two on lag. The fleet runs the image
# stages fused (one resize+thumbnail+watermark worker, 1..2) unless the demo is asked for --no-fuse.
FLEET = ("ingest=1,resize=1..2,thumbnail=1,watermark=1,gallery=1,users=1,invites=1,invite-sender=1,notifier=1,"
         "analytics=1,reconcile=1")
STUDIO_PIPELINE = Path("examples/pipeline.yaml")


def _start_fleet(log_dir: Path, env: dict[str, str], fuse: bool = True) -> subprocess.Popen[bytes]:
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "fleet.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--log-level", "INFO", "fleet", "up", "--workers", FLEET,
             "--fuse" if fuse else "--no-fuse"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        )


def _stop_fleet(fleet: subprocess.Popen[bytes]) -> None:
    if fleet.poll() is None:
        fleet.send_signal(signal.SIGTERM)  # workers drain and commit
    try:
        fleet.wait(120)
    except subprocess.TimeoutExpired:
        fleet.kill()


def _gallery_html(shoot: str, photos: list[GalleryPhoto], store: ObjectStore) -> str:
    cards = []
    for photo in photos:
        links = {name: store.presign_get(key, 3600) for name, key, *_ in photo.renditions}
        shown = links.get("thumb") or next(iter(links.values()))
        full = links.get("proof") or links.get("web") or shown
        cards.append(f'<figure><a href="{html.escape(full)}"><img src="{html.escape(shown)}" loading="lazy"></a>'
                     f"<figcaption>{html.escape(photo.name)}</figcaption></figure>")
    return (
        f"<!doctype html><meta charset=utf-8><title>darkroom · {html.escape(shoot)}</title>"
        "<style>body{font:14px system-ui;margin:2em}main{display:grid;grid-template-columns:repeat(auto-fill,"
        "minmax(220px,1fr));gap:1em}img{width:100%;aspect-ratio:1;object-fit:cover}</style>"
        f"<h1>Shoot {html.escape(shoot)}</h1><main>{''.join(cards)}</main>"
    )


@click.command("demo")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--photos", default=8, show_default=True, help="Sample photos to generate when no PATH is given.")
@click.option("--shoot", default=None, help="Shoot id (default: a new one).")
@click.option("--client-email", default="client@example.com", show_default=True, help="Who is invited to the gallery.")
@click.option("--timeout", "timeout_s", default=600.0, show_default=True, help="Seconds to wait for the gallery.")
@click.option("--fuse/--no-fuse", default=True, show_default=True,
              help="Run resize, thumbnail and watermark fused in one worker (derived renditions from memory).")
@click.pass_obj
def demo_command(settings: Settings, paths: tuple[Path, ...], photos: int, shoot: str | None, client_email: str,
                 timeout_s: float, fuse: bool) -> None:
    """Run the main job: stack, fleet, a shoot, PATHs (or samples) uploaded and processed, the gallery shown.

    Renditions come from DARKROOM_PIPELINE_FILE, or examples/pipeline.yaml (web, thumb, proof) when
    it is unset and the file exists.
    """
    console = Console(stderr=True)
    # The dev stack's keys, unless the caller brought their own (the demo runs against the dev stack).
    dev_env = {k: v for k, v in client_env(settings).items() if k not in os.environ}
    env = {**os.environ, **dev_env}
    if "DARKROOM_STORAGE__ACCESS_KEY" in dev_env and settings.storage.access_key is None:
        settings = settings.model_copy(update={"storage": settings.storage.model_copy(update={
            "access_key": settings.dev.s3_access_key, "secret_key": settings.dev.s3_secret_key})})
    if settings.pipeline_file is None and STUDIO_PIPELINE.exists():
        env["DARKROOM_PIPELINE_FILE"] = str(STUDIO_PIPELINE.resolve())
        settings = settings.model_copy(update={"pipeline_file": STUDIO_PIPELINE.resolve()})
    try:
        renditions = load_rendition_graph(settings.pipeline_file).names()
    except PipelineConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    shoot_id = shoot or f"demo-{uuid.uuid4().hex[:8]}"

    stack = DevStack(settings)
    try:
        stack.up(echo=lambda msg: console.print(f"[dim]{msg}[/dim]"))
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(f"[green]stack up[/green]: Kafka {settings.kafka.bootstrap_servers}, S3 {settings.storage.endpoint_url}")
    try:
        stack.web.wait_healthy(stack.web.start(env))
    except StackError as exc:
        raise click.ClickException(f"the web server did not start: {exc}") from exc
    console.print(f"[green]studio[/green]: {studio_url(settings)} (the web server keeps running; `darkroom dev down` "
                  "stops it)", soft_wrap=True)

    files = list(paths) or write_samples(stack.data_dir / "samples", photos)
    store = open_store(settings.storage)
    watchers = {topic: TopicWatcher(settings, topic) for topic in (FILES, GALLERIES, INVITES, DEAD_LETTER_QUEUE)}
    fleet = _start_fleet(stack.data_dir / "logs", env, fuse)
    console.print(f"fleet: {FLEET}{' (image stages fused)' if fuse else ''} (logs in {stack.data_dir / 'logs'}); renditions: {', '.join(sorted(renditions))}")
    try:
        title = f"Demo {shoot_id}"
        publish_event(settings, ShootCreated(shoot_id=shoot_id, title=title, client_email=client_email),
                      deterministic_id("shoot.created", shoot_id))
        console.print(f"shoot [bold]{shoot_id}[/bold] created for {client_email} (the invite goes out by mail)")
        try:
            results = upload_files(store, files, shoot_id)
        except StorageError as exc:
            raise click.ClickException(f"upload failed: {exc}") from exc
        uploaded = {r.file_id for r in results if r.ok}
        for failed in (r for r in results if not r.ok):
            console.print(f"[red]not uploaded[/red] {failed.path}: {failed.error}")
        console.print(f"uploaded {len(uploaded)} photo(s); waiting for every rendition and the gallery...")
        deadline = time.monotonic() + timeout_s
        _follow(console, watchers, uploaded, deadline)
        invite_id = _await_invite(console, watchers[INVITES], shoot_id, deadline)
        # Completing the shoot sends the client the pending gallery notification now, not at the interval.
        publish_event(settings, ShootCompleted(shoot_id=shoot_id, photo_count=len(uploaded)),
                      deterministic_id("shoot.completed", shoot_id))
        _await_mail(console, Mailbox.of(settings), title, deadline)
    finally:
        _stop_fleet(fleet)
        for watcher in watchers.values():
            watcher.close()

    gallery = gallery_photos(open_db(settings).conn(), shoot_id)
    table = Table(title=f"Gallery of shoot {shoot_id}: {len(gallery)} photo(s)")
    for column in ("photo", "rendition", "size", "format", "KB", "key"):
        table.add_column(column, overflow="fold")
    for photo in gallery:
        for name, key, width, height, size, fmt in photo.renditions:
            table.add_row(photo.name, name, f"{width}×{height}", fmt, str(size // 1024), key)
    Console(width=160).print(table)
    page = stack.data_dir / f"gallery-{shoot_id}.html"
    page.write_text(_gallery_html(shoot_id, gallery, store))
    console.print(f"gallery page (presigned links, valid 1 h): {page}")
    if invite_id is not None:
        console.print(f"the client's gallery (the invite mail's link): {gallery_url(settings, invite_id)}", soft_wrap=True)
    console.print(f"studio: {studio_url(settings)}", soft_wrap=True)
    console.print("mail sent to the client: `darkroom mail list`; the stack and the web server keep running: "
                  "`darkroom dev down`")
    if len(gallery) < len(uploaded):
        raise click.ClickException(f"{len(uploaded) - len(gallery)} photo(s) missing from the gallery: "
                                   f"see {stack.data_dir / 'logs'} and `darkroom dlq list`")


def _await_invite(console: Console, invites: TopicWatcher, shoot_id: str, deadline: float) -> str | None:
    """Wait for the shoot's `invite.sent` (the invite mail went out); returns the invite id."""
    while time.monotonic() < deadline:
        for seen in invites.poll(0.3):
            data = seen.envelope().data if seen.event_type == INVITE_SENT else {}
            if data.get("shootId") == shoot_id:
                console.print(f"  [magenta]invite.sent[/magenta] to {data['email']} ({data['messageId']})")
                return str(data["inviteId"])
    console.print("[yellow]no invite.sent yet[/yellow]: see the users, invites and invite-sender logs")
    return None


def _await_mail(console: Console, mailbox: Mailbox, title: str, deadline: float) -> None:
    """Wait for the gallery notification mail in Mailpit (its API: polled)."""
    while time.monotonic() < deadline:
        for mail in mailbox.messages(200):
            text = mailbox.text(mail.id)
            if title in text and "new photo" in text:
                console.print(f"  [magenta]mail[/magenta] {mail.subject} (web UI: {mailbox.base_url})")
                return
        time.sleep(0.5)
    console.print("[yellow]no gallery notification mail yet[/yellow]: see the notifier log")


def _follow(console: Console, watchers: dict[str, TopicWatcher], uploaded: set[str], deadline: float) -> None:
    """Print renditions, gallery updates and dead letters of `uploaded` until each photo is in the gallery or dead."""
    in_gallery: set[str] = set()
    dead: set[str] = set()
    while len(in_gallery | dead) < len(uploaded) and time.monotonic() < deadline:
        for seen in watchers[FILES].poll(0.3):
            fid = seen.key.decode() if seen.key else ""
            if seen.event_type == FILE_PROCESSED and fid in uploaded:
                data = seen.envelope().data
                console.print(f"  [green]file.processed[/green] {fid} {data['rendition']:>6} "
                              f"{data['width']}×{data['height']} {data['format']} {int(data['bytes']) // 1024} KB")
        for seen in watchers[GALLERIES].poll(0.0):
            if seen.event_type != GALLERY_UPDATED:
                continue
            data = seen.envelope().data
            if data.get("change") == "added" and data.get("fileId") in uploaded and data["fileId"] not in in_gallery:
                in_gallery.add(data["fileId"])
                console.print(f"  [cyan]gallery.updated[/cyan] {data['fileId']} ({len(in_gallery)}/{len(uploaded)})")
        for letter in watchers[DEAD_LETTER_QUEUE].poll(0.0):
            fid = letter.key.decode() if letter.key else ""
            if fid in uploaded and fid not in dead:
                dead.add(fid)
                console.print(f"  [red]dead-lettered[/red] {fid}: {letter.headers.get('dlq.error.message', b'').decode()}")
