"""`darkroom bench run`: the whole benchmark, one configuration of the fleet after another.

For each `--workers` configuration: start the fleet, wait until every worker is ready and the
groups have no backlog, then `runs` rounds of

1. an end-to-end run at the maximum upload rate (photos/s, latency under load),
2. for the main (last) configuration, end-to-end runs at fixed rates, a fraction of (1)'s photos/s
   (latency without a queue),
3. the compute floor and the Pillow baseline on the same photos (bench.offline), and for the main
   configuration thumbor (bench/thumbor.py, installed into its own virtualenv under the data dir),

so each round's ratios compare figures taken minutes apart, on the same machine state. Then, for the
main configuration, "how cost grows": one end-to-end run and one floor run on a corpus of each photo
size (12, 24, 48 MP). Then each worker's peak RSS, the fleet stops, and after the last configuration
the event-throughput comparison (bench.event_throughput) runs with no fleet competing for the cores.
The configurations themselves give the "workers per core" series (1, 4 and 2 fused workers by default).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka.admin import AdminClient

from bench import corpus as corpus_mod
from bench import cpu
from bench.e2e import E2ERun, Progress, run_e2e
from bench.fleet import BenchFleet, fixed_specs, fleet_env
from bench.machine import describe_machine
from bench.offline import OfflineResult, run_offline
from bench.profile import Profiler
from bench.report import (
    RSS_LIMIT_MIB,
    ConfigResult,
    ConfigSummary,
    EventsResult,
    FixedRun,
    FixedSummary,
    ProfileResult,
    Report,
    Round,
    ScalePoint,
    Target,
)
from bench.stats import median
from bench.thumbor import ensure_thumbor, run_thumbor
from operations.devstack import DevStack
from pipeline.contracts.renditions import load_rendition_graph
from pipeline.contracts.topics import FILES, STORAGE_EVENTS
from pipeline.kafka_config import admin_config
from pipeline.settings import Settings
from storage import ObjectStore, open_store
from storage.upload import expand_paths

# Scaling: one, four, then two image workers (fused by default: one resize+thumbnail+watermark worker
# per count); on 2 cores that is 0.5, 2 and 1 per core. The last is the main configuration.
DEFAULT_WORKERS = (
    "ingest=1,resize=1,thumbnail=1,watermark=1,gallery=1",
    "ingest=1,resize=4,thumbnail=4,watermark=4,gallery=1",
    "ingest=1,resize=2,thumbnail=2,watermark=2,gallery=1",
)
IMAGE_STAGES = ("resize", "thumbnail", "watermark")
Echo = Callable[[str], None]
ProgressFactory = Callable[[str, int], Progress]  # (description, total) -> update(done, total)


@dataclass(frozen=True)
class BenchConfig:
    """What `darkroom bench run` measures; defaults are the issue's full benchmark."""

    photos: int = 40
    runs: int = 3
    workers: tuple[str, ...] = DEFAULT_WORKERS
    rate_fractions: tuple[float, ...] = (0.5,)
    corpus_dir: Path | None = None  # photos to use; None = the generated corpus (bench/corpus.py)
    seed: int = 42
    jpeg_only: bool = False
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    baselines: bool = True
    events: int = 20_000
    event_runs: int = 3  # 0 = skip the event-throughput comparison
    profile: bool = False  # py-spy on an image worker during the main configuration's first run, and on the event runner
    fuse: bool = True  # the fleet runs the image stages fused (`fleet up --fuse`)
    thumbor: bool = True  # thumbor beside the floor and Pillow in the main configuration's rounds
    sizes: tuple[int, ...] = (12, 24, 48)  # megapixels of the "how cost grows" corpora; () skips them
    size_photos: int = 10  # photos per size
    pipeline_file: Path = Path("examples/pipeline.yaml")
    out_dir: Path | None = None  # None = <data dir>/bench/<UTC timestamp>
    timeout_s: float = 600.0
    command: str = field(default_factory=lambda: shlex.join(["darkroom", *sys.argv[1:]]))


def _corpus(config: BenchConfig, settings: Settings) -> list[Path]:
    if config.corpus_dir is not None:
        paths = expand_paths([config.corpus_dir])[: config.photos]
        if not paths:
            raise ValueError(f"no image files in {config.corpus_dir}")
        return paths
    folder = settings.dev.data_dir / "bench" / f"corpus-seed{config.seed}{'-jpeg' if config.jpeg_only else ''}"
    return corpus_mod.build(folder, config.photos, config.seed, config.jpeg_only)


def _corpus_facts(paths: list[Path]) -> dict[str, object]:
    import pyvips

    megapixels = []
    for path in paths:
        header = pyvips.Image.new_from_file(str(path), access="sequential")  # header only: pixels stay unread
        megapixels.append(header.width * header.height / 1e6)
    kinds: dict[str, int] = {}
    for path in paths:
        kinds[path.suffix.lower().lstrip(".")] = kinds.get(path.suffix.lower().lstrip("."), 0) + 1
    return {"photos": len(paths), "folder": str(paths[0].parent), "formats": kinds,
            "megapixels_max": round(max(megapixels), 1), "megapixels_median": round(median(megapixels) or 0, 1),
            "megabytes_total": round(sum(p.stat().st_size for p in paths) / 1e6, 1)}


def _partitions(settings: Settings) -> dict[str, int]:
    metadata = AdminClient(admin_config(settings)).list_topics(timeout=30)
    return {t: len(metadata.topics[t].partitions) for t in (FILES, STORAGE_EVENTS) if t in metadata.topics}


def _summary(rounds: list[Round], fractions: tuple[float, ...],
             memory: dict[str, float]) -> ConfigSummary:
    legs = {k: median([r.e2e.legs_ms.get(k) for r in rounds]) for k in ("ingest", "web", "thumb+proof", "gallery")}
    fixed = []
    for fraction in fractions:
        runs = [fx.run for r in rounds for fx in r.fixed if fx.fraction == fraction]
        if runs:
            fixed.append(FixedSummary(fraction=fraction, rate=median([x.target_rate for x in runs]),
                                      p50_ms=median([x.latency_ms.p50 for x in runs]),
                                      p95_ms=median([x.latency_ms.p95 for x in runs]),
                                      p99_ms=median([x.latency_ms.p99 for x in runs])))
    return ConfigSummary(
        photos_per_s=median([r.e2e.photos_per_s for r in rounds]),
        floor_photos_per_s=median([r.floor.photos_per_s if r.floor else None for r in rounds]),
        pillow_photos_per_s=median([r.pillow.photos_per_s if r.pillow else None for r in rounds]),
        over_floor=median([r.over_floor for r in rounds]),
        over_pillow=median([r.over_pillow for r in rounds]),
        floor_over_pillow=median([r.floor.photos_per_s / r.pillow.photos_per_s if r.floor and r.pillow else None
                                  for r in rounds]),
        thumbor_photos_per_s=median([r.thumbor.photos_per_s if r.thumbor else None for r in rounds]),
        over_thumbor=median([r.over_thumbor for r in rounds]),
        cpu_ms_per_photo=median([r.cpu_ms_per_photo for r in rounds]),
        floor_cpu_ms_per_photo=median([r.floor.cpu_ms_per_photo if r.floor else None for r in rounds]),
        p50_ms=median([r.e2e.latency_ms.p50 for r in rounds]),
        p95_ms=median([r.e2e.latency_ms.p95 for r in rounds]),
        p99_ms=median([r.e2e.latency_ms.p99 for r in rounds]),
        legs_ms=legs, fixed=fixed, peak_rss_mib=memory,
    )


def _targets(configs: list[ConfigResult], events: EventsResult | None) -> list[Target]:
    main = next(c for c in configs if c.main)
    peak = max((w.peak_rss_mib for c in configs for w in c.memory), default=None)
    half = next((f for f in main.summary.fixed if f.fraction == 0.5), None)

    def at_least(value: float | None, goal: float) -> bool | None:
        return None if value is None else value >= goal

    return [
        Target(name=f"end-to-end / compute floor (`{main.workers}`)", goal="≥ 0.85",
               value=main.summary.over_floor, met=at_least(main.summary.over_floor, 0.85)),
        Target(name=f"end-to-end / thumbor, same run (`{main.workers}`)", goal="≥ 4",
               value=main.summary.over_thumbor, met=at_least(main.summary.over_thumbor, 4.0)),
        Target(name="framework / raw loop, events/s", goal="≥ 0.5",
               value=events.ratio if events else None, met=at_least(events.ratio if events else None, 0.5)),
        Target(name="latency p50, PUT → gallery.updated, at half the max rate, ms", goal="≤ 500",
               value=half.p50_ms if half else None,
               met=None if half is None or half.p50_ms is None else half.p50_ms <= 500),
        Target(name="largest worker peak RSS, MiB (every configuration)", goal=f"≤ {RSS_LIMIT_MIB:.0f}",
               value=peak, met=None if peak is None else peak <= RSS_LIMIT_MIB),
    ]


def _image_workers(workers: str, fuse: bool) -> int:
    """Worker processes that decode originals: the fused stage's, or resize's when run apart."""
    return sum(s.minimum for s in fixed_specs(workers, fuse) if "resize" in s.stage.split("+"))


def _workers_series(configs: list[ConfigResult], cores: int, megapixels: float) -> list[ScalePoint]:
    return [ScalePoint(series="workers per core", megapixels=megapixels, workers_per_core=c.image_workers / cores,
                       photos=c.rounds[0].e2e.photos if c.rounds else 0, e2e_photos_per_s=c.summary.photos_per_s,
                       e2e_cpu_ms_per_photo=c.summary.cpu_ms_per_photo, floor_photos_per_s=c.summary.floor_photos_per_s,
                       floor_cpu_ms_per_photo=c.summary.floor_cpu_ms_per_photo) for c in configs]


class Bench:
    """One benchmark invocation; `run()` returns the report (the caller writes it)."""

    def __init__(self, settings: Settings, config: BenchConfig, echo: Echo = print,
                 progress: ProgressFactory | None = None) -> None:
        self.settings = settings
        self.config = config
        self.echo = echo
        self.progress = progress
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.out_dir = (config.out_dir or settings.dev.data_dir / "bench" / stamp).resolve()
        for workers in config.workers:
            fixed_specs(workers, config.fuse)  # refuse a bad spec before anything starts

    def run(self) -> Report:
        began = time.monotonic()
        cfg, settings = self.config, self.settings
        DevStack(settings).up(echo=self.echo)
        paths = _corpus(cfg, settings)
        renditions = load_rendition_graph(cfg.pipeline_file).names()
        partitions = _partitions(settings)
        most = max(s.minimum for w in cfg.workers for s in fixed_specs(w))
        if partitions and min(partitions.values()) < most:
            self.echo(f"warning: {partitions} partitions < {most} workers of a stage: some workers will idle")
        store = open_store(settings.storage)
        configs: list[ConfigResult] = []
        profile: ProfileResult | None = None
        self._thumbor_exe = ensure_thumbor(settings.dev.data_dir.resolve() / "bench" / "thumbor-venv", self.echo) \
            if cfg.thumbor and cfg.baselines else None
        self.scaling: list[ScalePoint] = []
        self.size_peak_rss: float | None = None
        for index, workers in enumerate(cfg.workers):
            main = index == len(cfg.workers) - 1
            result, prof = self._configuration(index, workers, main, paths, renditions, store)
            configs.append(result)
            profile = profile or prof
        events, event_profile = self._events() if cfg.event_runs > 0 else (None, None)
        cores = os.cpu_count() or 1
        megapixels = float(_corpus_facts(paths)["megapixels_median"])  # type: ignore[arg-type]
        scaling = self.scaling + (_workers_series(configs, cores, megapixels) if len(configs) > 1 else [])
        return Report(
            command=cfg.command, machine=describe_machine(),
            settings={"worker threads (DARKROOM_WORKER__THREADS)": settings.worker.threads,
                      "libvips concurrency (DARKROOM_IMAGING__VIPS_CONCURRENCY)": settings.imaging.vips_concurrency,
                      "max in flight": settings.worker.max_in_flight, "storage client": settings.storage.client,
                      "image stages fused": cfg.fuse,
                      "pipeline": str(cfg.pipeline_file), "renditions": ", ".join(sorted(renditions)),
                      "partitions": partitions, "reference processes": cfg.processes, "runs": cfg.runs},
            corpus=_corpus_facts(paths), configs=configs, events=events, profile=profile,
            targets=_targets(configs, events), wall_seconds=time.monotonic() - began,
            scaling=scaling, event_profile=event_profile, size_series_peak_rss_mib=self.size_peak_rss,
        )

    def _configuration(self, index: int, workers: str, main: bool, paths: list[Path], renditions: set[str],
                       store: ObjectStore) -> tuple[ConfigResult, ProfileResult | None]:
        cfg = self.config
        self.echo(f"fleet {workers}: starting")
        env = fleet_env(self.settings, self.out_dir / f"fleet-{index}", cfg.pipeline_file)
        fleet = BenchFleet(workers, env, self.out_dir / f"fleet-{index}", self.settings.worker.http_host, cfg.fuse)
        rounds: list[Round] = []
        profile: ProfileResult | None = None
        try:
            fleet.wait_ready()
            backlog = fleet.wait_quiet()
            self.echo(f"fleet {workers}: every worker ready, backlog {backlog}")
            for r in range(1, cfg.runs + 1):
                profiler = None
                if cfg.profile and main and r == 1:
                    resize = [pid for stage, pid, _, _ in fleet.workers() if "resize" in stage.split("+")]
                    profiler = Profiler(resize[0], self.out_dir / "profile-image-worker.txt") if resize else None
                    if profiler:
                        profiler.start()
                e2e = self._e2e(store, paths, workers, renditions, None, f"{_label(workers)} round {r}: max rate", fleet)
                if profiler is not None:
                    profile = profiler.stop()
                fixed = []
                if main:
                    for fraction in cfg.rate_fractions:
                        rate = fraction * e2e.photos_per_s
                        run = self._e2e(store, paths, workers, renditions, rate,
                                        f"{_label(workers)} round {r}: {rate:.2f} photos/s", fleet)
                        fixed.append(FixedRun(fraction=fraction, run=run))
                floor = pillow = thumbor = None
                if cfg.baselines:
                    floor = self._floor(paths)
                    pillow = run_offline("pillow", paths, cfg.processes)
                    if main and self._thumbor_exe is not None:
                        thumbor = run_thumbor(self._thumbor_exe, self.out_dir / "thumbor", paths, cfg.pipeline_file,
                                              cfg.processes, self.settings.worker.http_host)
                rounds.append(Round(index=r, e2e=e2e, fixed=fixed, floor=floor, pillow=pillow, thumbor=thumbor))
                refs = f", floor {floor.photos_per_s:.2f}, Pillow {pillow.photos_per_s:.2f}" if floor and pillow else ""
                refs += f", thumbor {thumbor.photos_per_s:.2f}" if thumbor else ""
                self.echo(f"  round {r}: e2e {e2e.photos_per_s:.2f} photos/s (p50 {_sec(e2e.latency_ms.p50)}){refs}")
            memory = fleet.memory()  # the benchmark corpus's peak: what the RSS target is about
            if main and cfg.sizes:
                self.scaling += self._sizes(fleet, store, workers, renditions)
                # The size series (48 MP photos) is a heavier corpus: its peak is reported beside, not mixed in.
                self.size_peak_rss = max((w.peak_rss_mib for w in fleet.memory()), default=None)
        finally:
            fleet.stop()
        by_stage: dict[str, float] = {}
        for w in memory:
            by_stage[w.stage] = max(by_stage.get(w.stage, 0.0), w.peak_rss_mib)
        result = ConfigResult(workers=workers, main=main, fused=cfg.fuse, image_workers=_image_workers(workers, cfg.fuse),
                              backlog_at_start=backlog, rounds=rounds, memory=memory,
                              summary=_summary(rounds, cfg.rate_fractions, by_stage))
        return result, profile

    def _floor(self, paths: list[Path]) -> OfflineResult:
        """The compute floor: the pipeline file's chain, fused, in one process per core."""
        return run_offline("floor", paths, self.config.processes, self.settings.imaging.vips_concurrency,
                           pipeline_file=self.config.pipeline_file)

    def _sizes(self, fleet: BenchFleet, store: ObjectStore, workers: str, renditions: set[str]) -> list[ScalePoint]:
        """How cost grows with the photo: one e2e run and one floor run per corpus size, on the main fleet."""
        cfg, points = self.config, []
        cores = os.cpu_count() or 1
        for mp in cfg.sizes:
            folder = self.settings.dev.data_dir / "bench" / f"corpus-{mp}mp-seed{cfg.seed}"
            self.echo(f"  how cost grows: {cfg.size_photos} photos of {mp} MP")
            paths = corpus_mod.build_sized(folder, cfg.size_photos, mp, cfg.seed)
            e2e = self._e2e(store, paths, workers, renditions, None, f"{_label(workers)}: {mp} MP", fleet)
            floor = self._floor(paths) if cfg.baselines else None
            points.append(ScalePoint(
                series="photo size", megapixels=mp, workers_per_core=_image_workers(workers, cfg.fuse) / cores,
                photos=len(paths), e2e_photos_per_s=e2e.photos_per_s,
                e2e_cpu_ms_per_photo=sum(e2e.cpu_s.values()) * 1000 / e2e.photos if e2e.cpu_s else None,
                floor_photos_per_s=floor.photos_per_s if floor else None,
                floor_cpu_ms_per_photo=floor.cpu_ms_per_photo if floor else None))
        return points

    def _e2e(self, store: ObjectStore, paths: list[Path], workers: str, renditions: set[str], rate: float | None,
             what: str, fleet: BenchFleet) -> E2ERun:
        progress = self.progress(what, len(paths)) if self.progress else None
        pids = self._pids(fleet)
        before = cpu.snapshot(pids)
        run = run_e2e(self.settings, store, paths, workers, renditions, rate, self.config.timeout_s, progress)
        run.cpu_s = cpu.used(before, cpu.snapshot(pids))
        if run.completed < run.photos:
            self.echo(f"  {run.photos - run.completed} photo(s) dead-lettered in shoot {run.shoot_id}")
        return run

    def _pids(self, fleet: BenchFleet) -> dict[str, int]:
        """Every process a photo's path crosses on this machine, labelled for the CPU table."""
        pids = {"bench (uploader, collector)": os.getpid()}
        counts: dict[str, int] = {}
        for stage, pid, _port, _restarts in fleet.workers():
            counts[stage] = counts.get(stage, 0) + 1
            pids[f"{stage}#{counts[stage]}"] = pid
        for name, service in DevStack(self.settings).status().items():
            if service.pid is not None and name != "smtp":
                pids[f"{name} (stack)"] = service.pid
        return pids

    def _events(self) -> tuple[EventsResult, ProfileResult | None]:
        """bench.event_throughput in a process of its own: this one's threads (progress display, clients)
        would take the GIL from the runner it measures."""
        cfg = self.config
        self.echo(f"event throughput: {cfg.event_runs} runs of {cfg.events} events")
        out = self.out_dir / "event-throughput.json"
        command = [sys.executable, "-m", "bench.event_throughput", "--events", str(cfg.events),
                   "--runs", str(cfg.event_runs), "--json", str(out)]
        if cfg.profile:
            command += ["--profile", str(self.out_dir / "profile-event-runner.txt")]
        env = fleet_env(self.settings, self.settings.dev.data_dir, cfg.pipeline_file)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=cfg.timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"bench.event_throughput failed ({done.returncode}): {done.stderr[-2000:]}")
        data = json.loads(out.read_text())
        runs = data["runs"]
        result = EventsResult(events=cfg.events, runs=runs, raw_eps=median([r["raw_eps"] for r in runs]) or 0.0,
                              framework_eps=median([r["framework_eps"] for r in runs]) or 0.0,
                              ratio=median([r["ratio"] for r in runs]) or 0.0)
        return result, (ProfileResult.model_validate(data["profile"]) if data.get("profile") else None)


def _label(workers: str) -> str:
    return ",".join(item for item in workers.split(",") if not item.startswith(("ingest", "gallery")))


def _sec(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f}s"
