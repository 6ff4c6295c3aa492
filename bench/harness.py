"""`darkroom bench run`: the whole benchmark, one configuration of the fleet after another.

For each `--workers` configuration: start the fleet, wait until every worker is ready and the
groups have no backlog, then `runs` rounds of

1. an end-to-end run at the maximum upload rate (photos/s, latency under load),
2. for the main (last) configuration, end-to-end runs at fixed rates, a fraction of (1)'s photos/s
   (latency without a queue),
3. the compute floor and the Pillow baseline on the same photos (bench.offline),

so each round's ratios compare figures taken minutes apart, on the same machine state. Then each
worker's peak RSS, the fleet stops, and after the last configuration the event-throughput
comparison (bench.event_throughput) runs with no fleet competing for the cores.
"""

from __future__ import annotations

import os
import shlex
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
from bench.event_throughput import measure, summarise
from bench.fleet import BenchFleet, fixed_specs, fleet_env
from bench.machine import describe_machine
from bench.offline import run_offline
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
    Target,
)
from bench.stats import median
from operations.devstack import DevStack
from pipeline.contracts.renditions import load_rendition_graph
from pipeline.contracts.topics import FILES, STORAGE_EVENTS
from pipeline.kafka_config import admin_config
from pipeline.settings import Settings
from storage import ObjectStore, open_store
from storage.upload import expand_paths

# Scaling: one, then two worker processes for each image stage; the last is the main configuration.
DEFAULT_WORKERS = (
    "ingest=1,resize=1,thumbnail=1,watermark=1,gallery=1",
    "ingest=1,resize=2,thumbnail=2,watermark=2,gallery=1",
)
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
    events: int = 10_000
    event_runs: int = 3  # 0 = skip the event-throughput comparison
    profile: bool = False  # py-spy on a resize worker during the main configuration's first run
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
        p50_ms=median([r.e2e.latency_ms.p50 for r in rounds]),
        p95_ms=median([r.e2e.latency_ms.p95 for r in rounds]),
        p99_ms=median([r.e2e.latency_ms.p99 for r in rounds]),
        legs_ms=legs, fixed=fixed, peak_rss_mib=memory,
    )


def _targets(configs: list[ConfigResult], events: EventsResult | None) -> list[Target]:
    main = next(c for c in configs if c.main)
    peak = max((w.peak_rss_mib for c in configs for w in c.memory), default=None)

    def at_least(value: float | None, goal: float) -> bool | None:
        return None if value is None else value >= goal

    return [
        Target(name=f"end-to-end / compute floor (`{main.workers}`)", goal="≥ 0.85",
               value=main.summary.over_floor, met=at_least(main.summary.over_floor, 0.85)),
        Target(name=f"end-to-end / Pillow baseline (`{main.workers}`)", goal="≥ 3",
               value=main.summary.over_pillow, met=at_least(main.summary.over_pillow, 3.0)),
        Target(name="framework / raw loop, events/s", goal="≥ 0.5",
               value=events.ratio if events else None, met=at_least(events.ratio if events else None, 0.5)),
        Target(name="largest worker peak RSS, MiB (every configuration)", goal=f"≤ {RSS_LIMIT_MIB:.0f}",
               value=peak, met=None if peak is None else peak <= RSS_LIMIT_MIB),
    ]


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
            fixed_specs(workers)  # refuse a bad spec before anything starts

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
        for index, workers in enumerate(cfg.workers):
            main = index == len(cfg.workers) - 1
            result, prof = self._configuration(index, workers, main, paths, renditions, store)
            configs.append(result)
            profile = profile or prof
        events = self._events() if cfg.event_runs > 0 else None
        return Report(
            command=cfg.command, machine=describe_machine(),
            settings={"worker threads (DARKROOM_WORKER__THREADS)": settings.worker.threads,
                      "libvips concurrency (DARKROOM_IMAGING__VIPS_CONCURRENCY)": settings.imaging.vips_concurrency,
                      "max in flight": settings.worker.max_in_flight, "storage client": settings.storage.client,
                      "pipeline": str(cfg.pipeline_file), "renditions": ", ".join(sorted(renditions)),
                      "partitions": partitions, "reference processes": cfg.processes, "runs": cfg.runs},
            corpus=_corpus_facts(paths), configs=configs, events=events, profile=profile,
            targets=_targets(configs, events), wall_seconds=time.monotonic() - began,
        )

    def _configuration(self, index: int, workers: str, main: bool, paths: list[Path], renditions: set[str],
                       store: ObjectStore) -> tuple[ConfigResult, ProfileResult | None]:
        cfg = self.config
        self.echo(f"fleet {workers}: starting")
        env = fleet_env(self.settings, self.out_dir / f"fleet-{index}", cfg.pipeline_file)
        fleet = BenchFleet(workers, env, self.out_dir / f"fleet-{index}", self.settings.worker.http_host)
        rounds: list[Round] = []
        profile: ProfileResult | None = None
        try:
            fleet.wait_ready()
            backlog = fleet.wait_quiet()
            self.echo(f"fleet {workers}: every worker ready, backlog {backlog}")
            for r in range(1, cfg.runs + 1):
                profiler = None
                if cfg.profile and main and r == 1:
                    resize = [pid for stage, pid, _, _ in fleet.workers() if stage == "resize"]
                    profiler = Profiler(resize[0], self.out_dir / "profile-resize.txt") if resize else None
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
                floor = pillow = None
                if cfg.baselines:
                    floor = run_offline("floor", paths, cfg.processes, self.settings.imaging.vips_concurrency)
                    pillow = run_offline("pillow", paths, cfg.processes)
                rounds.append(Round(index=r, e2e=e2e, fixed=fixed, floor=floor, pillow=pillow))
                refs = f", floor {floor.photos_per_s:.2f}, Pillow {pillow.photos_per_s:.2f}" if floor and pillow else ""
                self.echo(f"  round {r}: e2e {e2e.photos_per_s:.2f} photos/s (p50 {_sec(e2e.latency_ms.p50)}){refs}")
            memory = fleet.memory()
        finally:
            fleet.stop()
        by_stage: dict[str, float] = {}
        for w in memory:
            by_stage[w.stage] = max(by_stage.get(w.stage, 0.0), w.peak_rss_mib)
        result = ConfigResult(workers=workers, main=main, backlog_at_start=backlog, rounds=rounds, memory=memory,
                              summary=_summary(rounds, cfg.rate_fractions, by_stage))
        return result, profile

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

    def _events(self) -> EventsResult:
        self.echo(f"event throughput: {self.config.event_runs} runs of {self.config.events} events")
        results = measure(self.settings, self.config.events, self.config.event_runs)
        s = summarise(results)
        return EventsResult(events=self.config.events,
                            runs=[{"raw_eps": r.raw_eps, "framework_eps": r.framework_eps, "ratio": r.ratio} for r in results],
                            raw_eps=s["raw_eps"], framework_eps=s["framework_eps"], ratio=s["ratio"])


def _label(workers: str) -> str:
    return ",".join(item for item in workers.split(",") if not item.startswith(("ingest", "gallery")))


def _sec(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f}s"
