"""`darkroom bench run`: the command line of the benchmark harness (entry point `darkroom.commands:bench`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from bench.e2e import Progress as ProgressFn
from bench.fleet import FleetError, fixed_specs
from bench.harness import DEFAULT_WORKERS, Bench, BenchConfig
from bench.report import to_markdown, write_report
from bench.thumbor import ThumborError
from operations.devstack import StackError
from pipeline.settings import Settings


@click.group("bench")
def bench_group() -> None:
    """Benchmarks: photos per second, latency and memory of the fleet against the machine's best."""


@contextmanager
def _bars(console: Console) -> Iterator[Progress]:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bars:
        yield bars


@bench_group.command("run")
@click.option("--photos", default=40, show_default=True, help="Photos per end-to-end run (and per reference run).")
@click.option("--runs", default=3, show_default=True, help="Rounds per configuration; figures are medians over rounds.")
@click.option("--workers", "workers", multiple=True,
              help="A fleet configuration, STAGE=N comma-separated (fixed counts); repeat to compare. "
                   f"Default: {' and '.join(DEFAULT_WORKERS)}. The last one is the main configuration.")
@click.option("--rate-fraction", "fractions", multiple=True, type=float, default=(0.5,), show_default=True,
              help="Fixed-rate latency runs of the main configuration, as a fraction of the round's maximum photos/s.")
@click.option("--corpus", "corpus_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A folder of photos to use instead of the generated corpus (24/12 MP JPEGs, PNG, WebP).")
@click.option("--seed", default=42, show_default=True, help="Seed of the generated corpus.")
@click.option("--jpeg-only", is_flag=True, help="Generated corpus without its PNG and WebP.")
@click.option("--no-baselines", is_flag=True, help="Skip the compute floor and the Pillow baseline.")
@click.option("--events", default=20_000, show_default=True, help="Events per event-throughput run.")
@click.option("--event-runs", default=3, show_default=True, help="Event-throughput runs (0 skips it).")
@click.option("--profile", is_flag=True,
              help="py-spy an image worker during the main configuration's first run, and the event runner.")
@click.option("--fuse/--no-fuse", default=True, show_default=True,
              help="Run the image stages fused (one resize+thumbnail+watermark worker per count), or apart.")
@click.option("--thumbor/--no-thumbor", default=True, show_default=True,
              help="thumbor beside the floor and Pillow (installed from PyPI into <data dir>/bench/thumbor-venv once).")
@click.option("--sizes", default="12,24,48", show_default=True,
              help="Megapixels of the 'how cost grows' corpora (12, 24, 48), comma-separated; empty skips them.")
@click.option("--size-photos", default=10, show_default=True, help="Photos per 'how cost grows' size.")
@click.option("--pipeline", "pipeline_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=Path("examples/pipeline.yaml"), show_default=True, help="The rendition graph the fleet runs.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the report goes (default: <data dir>/bench/<UTC time>).")
@click.pass_obj
def run_command(settings: Settings, photos: int, runs: int, workers: tuple[str, ...], fractions: tuple[float, ...],
                corpus_dir: Path | None, seed: int, jpeg_only: bool, no_baselines: bool, events: int, event_runs: int,
                profile: bool, fuse: bool, thumbor: bool, sizes: str, size_photos: int, pipeline_file: Path,
                out_dir: Path | None) -> None:
    """Run the benchmark on the local stack and write report.json, report.md and report.png.

    End to end (upload → gallery.updated) for each --workers configuration, the compute floor
    (pyvips in one process per core) and Pillow on the same photos, worker peak RSS, and the
    framework's event throughput against a raw confluent-kafka loop.
    """
    console = Console(stderr=True)
    config = BenchConfig(photos=photos, runs=runs, workers=workers or DEFAULT_WORKERS, rate_fractions=fractions,
                         corpus_dir=corpus_dir, seed=seed, jpeg_only=jpeg_only, baselines=not no_baselines,
                         events=events, event_runs=event_runs, profile=profile, pipeline_file=pipeline_file,
                         out_dir=out_dir, fuse=fuse, thumbor=thumbor, size_photos=size_photos,
                         sizes=tuple(int(mp) for mp in sizes.split(",") if mp.strip()))
    bad = [mp for mp in config.sizes if mp not in (12, 24, 48)]
    if bad:
        raise click.BadParameter(f"sizes must be among 12, 24, 48 (megapixels), not {bad}", param_hint="--sizes")
    for spec in config.workers:
        try:
            fixed_specs(spec, fuse)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--workers") from exc
    with _bars(console) as bars:
        def progress(description: str, total: int) -> ProgressFn:
            task = bars.add_task(description, total=total)
            return lambda done, _total: bars.update(task, completed=done)

        bench = Bench(settings, config, echo=lambda msg: console.print(f"[dim]{escape(msg)}[/dim]"), progress=progress)
        try:
            report = bench.run()
        except (StackError, FleetError, ThumborError, TimeoutError) as exc:
            raise click.ClickException(f"{exc} (logs: {bench.out_dir})") from exc
    paths = write_report(report, bench.out_dir)
    click.echo(to_markdown(report))
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")
