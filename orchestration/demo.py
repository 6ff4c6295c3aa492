"""`darkroom demo`: the main job on one machine, from nothing to a gallery.

Starts the local stack, the ingest and resize workers, uploads photos (samples made on the spot if
none are given), prints each `file.processed` as it arrives, then shows the gallery and writes it
as an HTML page with presigned links.
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
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from orchestration.devstack import DevStack, StackError
from orchestration.samples import write_samples
from pipeline.events import FILE_PROCESSED
from pipeline.settings import Settings
from pipeline.topics import DEAD_LETTER_QUEUE, FILES
from pipeline.watch import TopicWatcher
from storage import StorageError, open_store
from storage.upload import UploadResult, upload_files

DEMO_STAGES = ("ingest", "resize")


def _start_worker(stage: str, log_dir: Path) -> subprocess.Popen[bytes]:
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"worker-{stage}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--log-level", "INFO", "worker", stage],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
        )


def _stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _gallery_html(shoot: str, rows: list[tuple[str, int, int, int, str]]) -> str:
    cards = "\n".join(
        f'<figure><a href="{html.escape(url)}"><img src="{html.escape(url)}" loading="lazy"></a>'
        f"<figcaption>{html.escape(fid)} · {w}×{h} · {size // 1024} KB</figcaption></figure>"
        for fid, w, h, size, url in rows
    )
    return (
        f"<!doctype html><meta charset=utf-8><title>darkroom · {html.escape(shoot)}</title>"
        "<style>body{font:14px system-ui;margin:2em}main{display:grid;grid-template-columns:repeat(auto-fill,"
        "minmax(260px,1fr));gap:1em}img{width:100%;height:200px;object-fit:cover}</style>"
        f"<h1>Shoot {html.escape(shoot)}</h1><main>{cards}</main>"
    )


@click.command("demo")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--photos", default=8, show_default=True, help="Sample photos to generate when no PATH is given.")
@click.option("--shoot", default=None, help="Shoot id (default: a new one).")
@click.option("--timeout", "timeout_s", default=300.0, show_default=True, help="Seconds to wait for every rendition.")
@click.pass_obj
def demo_command(settings: Settings, paths: tuple[Path, ...], photos: int, shoot: str | None, timeout_s: float) -> None:
    """Run the main job: local stack, workers, upload PATHs (or samples), watch renditions arrive, show the gallery."""
    console = Console(stderr=True)
    shoot_id = shoot or f"demo-{uuid.uuid4().hex[:8]}"
    stack = DevStack(settings)
    try:
        stack.up(echo=lambda msg: console.print(f"[dim]{msg}[/dim]"))
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(f"[green]stack up[/green]: Kafka {settings.kafka.bootstrap_servers}, S3 {settings.storage.endpoint_url}")

    files = list(paths) or write_samples(stack.data_dir / "samples", photos)
    store = open_store(settings.storage)
    watcher = TopicWatcher(settings, FILES)
    dead = TopicWatcher(settings, DEAD_LETTER_QUEUE)
    workers = [_start_worker(stage, stack.data_dir / "logs") for stage in DEMO_STAGES]
    console.print(f"workers: {', '.join(DEMO_STAGES)} (logs in {stack.data_dir / 'logs'})")
    try:
        try:
            results: list[UploadResult] = upload_files(store, files, shoot_id)
        except StorageError as exc:
            raise click.ClickException(f"upload failed: {exc}") from exc
        uploaded = {r.file_id: r for r in results if r.ok}
        for failed in (r for r in results if not r.ok):
            console.print(f"[red]not uploaded[/red] {failed.path}: {failed.error}")
        console.print(f"uploaded {len(uploaded)} photo(s) to shoot [bold]{shoot_id}[/bold]; waiting for renditions...")

        done: dict[str, dict[str, Any]] = {}
        failed_ids: dict[str, str] = {}
        deadline = time.monotonic() + timeout_s
        while len(done) + len(failed_ids) < len(uploaded) and time.monotonic() < deadline:
            for seen in watcher.poll(0.5):
                fid = seen.key.decode() if seen.key else ""
                if seen.event_type == FILE_PROCESSED and fid in uploaded and fid not in done:
                    data = seen.envelope().data
                    done[fid] = data
                    console.print(
                        f"  [green]file.processed[/green] {fid} → {data['rendition']} {data['width']}×{data['height']} "
                        f"{int(data['bytes']) // 1024} KB  {data['key']}"
                    )
            for letter in dead.poll(0.0):
                fid = letter.key.decode() if letter.key else ""
                if fid in uploaded and fid not in failed_ids:
                    reason = letter.headers.get("dlq.error.message", b"").decode()
                    failed_ids[fid] = reason
                    console.print(f"  [red]dead-lettered[/red] {fid}: {reason}")
    finally:
        _stop_workers(workers)
        watcher.close()
        dead.close()

    table = Table(title=f"Gallery of shoot {shoot_id}")
    for column in ("photo", "rendition", "size", "KB", "link (valid 1 h)"):
        table.add_column(column)
    rows = []
    for fid, data in sorted(done.items()):
        url = store.presign_get(str(data["key"]), 3600)
        rows.append((fid, int(data["width"]), int(data["height"]), int(data["bytes"]), url))
        table.add_row(fid, str(data["rendition"]), f"{data['width']}×{data['height']}", str(int(data["bytes"]) // 1024), url)
    Console().print(table)
    page = stack.data_dir / f"gallery-{shoot_id}.html"
    page.write_text(_gallery_html(shoot_id, rows))
    console.print(f"gallery page: {page}")
    console.print("the stack keeps running; stop it with `darkroom dev down`")
    missing = set(uploaded) - set(done) - set(failed_ids)
    if missing:
        raise click.ClickException(f"{len(missing)} photo(s) got no rendition within {timeout_s:.0f}s: see the worker logs")
