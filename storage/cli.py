"""``darkroom upload``: put photos of a shoot into the object store as originals."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from storage.errors import StorageError, StorageUnavailable
from storage.factory import open_store
from storage.keys import ORIGINALS_PREFIX, InvalidKey, original_key
from storage.upload import UploadResult, expand_paths, upload_files


@click.command("upload")
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)
@click.option("--shoot", "shoot_id", required=True, help="Shoot id the photos belong to.")
@click.option(
    "--parallel", default=4, show_default=True, type=click.IntRange(1, 64), help="Files uploaded at once."
)
def upload_command(paths: tuple[Path, ...], shoot_id: str, parallel: int) -> None:
    """Upload photos (files, or directories of image files) as originals of a shoot.

    Each photo lands at originals/shoots/SHOOT/<name>-<hash>.<ext>; uploading the same photo
    again overwrites the same object.
    """
    from pipeline.settings import Settings

    try:
        original_key(shoot_id, "x", "jpg")
        files = expand_paths(list(paths))
    except InvalidKey as exc:
        raise click.BadParameter(str(exc)) from exc
    if not files:
        raise click.UsageError("no image files found in the given paths")

    settings = Settings()
    console = Console(stderr=True)
    try:
        store = open_store(settings.storage)
        store.ping()
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc

    sizes = {f: f.stat().st_size for f in files}
    total_bytes = sum(sizes.values())
    failures: list[UploadResult] = []
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]upload"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("upload", total=total_bytes)

        def on_done(result: UploadResult) -> None:
            progress.update(task, advance=sizes.get(result.path, 0))
            if not result.ok:
                failures.append(result)
                progress.console.print(f"[red]failed[/red] {result.path}: {result.error}")

        try:
            results = upload_files(store, files, shoot_id, parallel=parallel, on_done=on_done)
        except StorageUnavailable as exc:
            raise click.ClickException(f"upload stopped: {exc}") from exc

    elapsed = max(time.perf_counter() - started, 1e-9)
    stored = [r for r in results if r.ok]
    stored_bytes = sum(r.size for r in stored)
    click.echo(
        f"uploaded {len(stored)}/{len(results)} files, {stored_bytes / 1e6:.1f} MB in {elapsed:.1f} s "
        f"({stored_bytes / 1e6 / elapsed:.1f} MB/s) to s3://{store.bucket}/{ORIGINALS_PREFIX}{shoot_id}/"
    )
    if failures:
        raise click.ClickException(f"{len(failures)} file(s) failed; see the messages above")
