"""The benchmark report: its data model, and how it is written (JSON, Markdown, a PNG chart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from bench.e2e import E2ERun
from bench.fleet import WorkerMemory
from bench.machine import Machine
from bench.offline import OfflineResult

RSS_LIMIT_MIB = 300.0


class FixedRun(BaseModel):
    """A run at a fixed upload rate: `fraction` of the same round's maximum throughput."""

    fraction: float
    run: E2ERun


class Round(BaseModel):
    """One round of one fleet configuration: the end-to-end runs and the two references, back to back."""

    index: int
    e2e: E2ERun
    fixed: list[FixedRun] = Field(default_factory=list)
    floor: OfflineResult | None = None
    pillow: OfflineResult | None = None
    thumbor: OfflineResult | None = None  # main configuration only (bench/thumbor.py)

    @property
    def over_floor(self) -> float | None:
        return self.e2e.photos_per_s / self.floor.photos_per_s if self.floor else None

    @property
    def over_pillow(self) -> float | None:
        return self.e2e.photos_per_s / self.pillow.photos_per_s if self.pillow else None

    @property
    def over_thumbor(self) -> float | None:
        return self.e2e.photos_per_s / self.thumbor.photos_per_s if self.thumbor else None

    @property
    def cpu_ms_per_photo(self) -> float | None:
        """CPU of every process on a photo's path (workers, Kafka, S3 server, bench) per photo, max-rate run."""
        return sum(self.e2e.cpu_s.values()) * 1000 / self.e2e.photos if self.e2e.cpu_s else None


class FixedSummary(BaseModel):
    """Latency at one fixed-rate fraction, medians over rounds."""

    fraction: float
    rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class ConfigSummary(BaseModel):
    """Medians over the rounds of a configuration; ratios are medians of per-round ratios."""

    photos_per_s: float | None
    floor_photos_per_s: float | None
    pillow_photos_per_s: float | None
    over_floor: float | None
    over_pillow: float | None
    floor_over_pillow: float | None
    thumbor_photos_per_s: float | None = None
    over_thumbor: float | None = None
    cpu_ms_per_photo: float | None = None  # every process on the path, max-rate runs
    floor_cpu_ms_per_photo: float | None = None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    legs_ms: dict[str, float | None]
    fixed: list[FixedSummary]
    peak_rss_mib: dict[str, float]  # stage -> largest peak among its workers


class ConfigResult(BaseModel):
    """Every round of one `--workers` configuration, and its workers' memory."""

    workers: str
    main: bool  # the configuration the fixed-rate latency runs (and the headline) use
    fused: bool = False  # the image stages ran as one fused stage
    image_workers: int = 0  # worker processes that decode originals (the resize or fused stage)
    backlog_at_start: int
    rounds: list[Round]
    memory: list[WorkerMemory]
    summary: ConfigSummary


class EventsResult(BaseModel):
    """bench.event_throughput: framework pass-through stage vs raw confluent-kafka loop."""

    events: int
    runs: list[dict[str, float]]  # raw_eps, framework_eps, ratio per run
    raw_eps: float
    framework_eps: float
    ratio: float


class ProfileResult(BaseModel):
    """Where a resize worker's active time went during one end-to-end run (py-spy samples)."""

    pid: int
    seconds: float
    samples: int  # busy samples (the shares below are of these)
    waiting_samples: int = 0  # samples blocked in a known wait (idle pool thread, Kafka poll, select)
    top_self: list[tuple[str, float]]  # function -> share of active samples, innermost frame
    top_total: list[tuple[str, float]]  # function -> share of active samples anywhere on the stack
    raw_file: str
    error: str | None = None


class ScalePoint(BaseModel):
    """One point of "how cost grows": photos/s and CPU per photo at one photo size or one workers-per-core."""

    series: str  # "photo size" (main fleet, corpus of one size) or "workers per core" (one per configuration)
    megapixels: float
    workers_per_core: float
    photos: int
    e2e_photos_per_s: float | None
    e2e_cpu_ms_per_photo: float | None  # every process on the path
    floor_photos_per_s: float | None
    floor_cpu_ms_per_photo: float | None


class Target(BaseModel):
    """A target of issue 13 and where we stand."""

    name: str
    goal: str
    value: float | None
    met: bool | None


class Report(BaseModel):
    """Everything one `darkroom bench run` measured."""

    command: str
    machine: Machine
    settings: dict[str, object]
    corpus: dict[str, object]
    configs: list[ConfigResult]
    events: EventsResult | None
    profile: ProfileResult | None
    targets: list[Target]
    wall_seconds: float
    scaling: list[ScalePoint] = Field(default_factory=list)
    event_profile: ProfileResult | None = None  # the framework's pass-through runner during bench.event_throughput
    size_series_peak_rss_mib: float | None = None  # largest worker peak after the size series (up to 48 MP photos)


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def to_markdown(report: Report) -> str:
    """The report as Markdown: the figures first, then the details of every round."""
    m = report.machine
    out = [
        "# darkroom bench run", "",
        f"**Command.** `{report.command}`", "",
        f"**Machine.** {m.cores} cores ({m.cpu_model}), {m.memory_gib:g} GiB RAM, {m.os}, Python {m.python}, "
        f"libvips {m.libvips} (pyvips {m.pyvips}), Pillow {m.pillow}. **Date** {m.date} (UTC). "
        f"Wall time of the whole benchmark: {report.wall_seconds:.0f} s.", "",
        "**Settings.** " + ", ".join(f"{k} = {v}" for k, v in report.settings.items()) + ".", "",
        "**Corpus.** " + ", ".join(f"{k}: {v}" for k, v in report.corpus.items()) + ".", "",
        "## Targets", "",
        "| target | goal | measured | met |", "|---|---|---:|---|",
    ]
    for t in report.targets:
        out.append(f"| {t.name} | {t.goal} | {_f(t.value)} | {'–' if t.met is None else ('yes' if t.met else '**no**')} |")
    out += ["", "## Throughput (photos/s, medians over rounds; ratios are medians of per-round ratios)", "",
            "| workers | end to end | compute floor | Pillow | thumbor | e2e / floor | e2e / Pillow | e2e / thumbor "
            "| floor / Pillow |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in report.configs:
        s = c.summary
        label = f"`{c.workers}`{' fused' if c.fused else ''}{' (main)' if c.main else ''}"
        out.append(f"| {label} | {_f(s.photos_per_s)} | {_f(s.floor_photos_per_s)} | "
                   f"{_f(s.pillow_photos_per_s)} | {_f(s.thumbor_photos_per_s)} | {_f(s.over_floor)} | "
                   f"{_f(s.over_pillow)} | {_f(s.over_thumbor)} | {_f(s.floor_over_pillow)} |")
    out += ["", "## Latency, PUT done → gallery.updated (ms, nearest rank; medians over rounds)", "",
            "| workers | upload rate | p50 | p95 | p99 | legs (median ms): ingest / web / thumb+proof / gallery |",
            "|---|---|---:|---:|---:|---|"]
    for c in report.configs:
        s = c.summary
        legs = " / ".join(_ms(s.legs_ms.get(k)) for k in ("ingest", "web", "thumb+proof", "gallery"))
        out.append(f"| `{c.workers}` | as fast as possible | {_ms(s.p50_ms)} | {_ms(s.p95_ms)} | {_ms(s.p99_ms)} | {legs} |")
        for fx in s.fixed:
            out.append(f"| `{c.workers}` | {fx.fraction:g} × max = {_f(fx.rate)} photos/s | {_ms(fx.p50_ms)} | "
                       f"{_ms(fx.p95_ms)} | {_ms(fx.p99_ms)} | |")
    out += ["", f"## Peak RSS per worker process (VmHWM, MiB; limit {RSS_LIMIT_MIB:.0f})", "",
            "| workers | stage | pid | peak RSS | restarts |", "|---|---|---:|---:|---:|"]
    for c in report.configs:
        for w in sorted(c.memory, key=lambda w: (w.stage, w.pid)):
            out.append(f"| `{c.workers}` | {w.stage} | {w.pid} | {w.peak_rss_mib:.0f} | {w.restarts} |")
    refs = [ref for c in report.configs if c.main for r in c.rounds[:1] for ref in (r.floor, r.pillow, r.thumbor)]
    for ref in refs:
        if ref is not None:
            out.append(f"| (reference) | {ref.kind}, {ref.processes} processes | – | {ref.peak_rss_mib:.0f} | – |")
    out += _cpu_table(report)
    out += _scaling_table(report)
    if report.events is not None:
        e = report.events
        out += ["", f"## Event throughput ({e.events} events per run, bench.event_throughput)", "",
                "| run | raw loop ev/s | framework ev/s | framework / raw |", "|---:|---:|---:|---:|"]
        for i, r in enumerate(e.runs, 1):
            out.append(f"| {i} | {r['raw_eps']:.0f} | {r['framework_eps']:.0f} | {r['ratio']:.2f} |")
        out.append(f"| median | {e.raw_eps:.0f} | {e.framework_eps:.0f} | {e.ratio:.2f} |")
    for p, what in ((report.profile, "an image worker (resize or fused)"),
                    (report.event_profile, "the framework's pass-through runner (bench.event_throughput)")):
        if p is None:
            continue
        out += ["", f"## Profile of {what} (py-spy, pid {p.pid}, {p.seconds:.0f} s, {p.samples} busy samples "
                f"and {p.waiting_samples} waiting, at 100 Hz over every thread)", ""]
        if p.error:
            out.append(f"Not profiled: {p.error}")
        else:
            out += ["| innermost frame | share | | anywhere on the stack | share |", "|---|---:|---|---|---:|"]
            for (a, sa), (b, sb) in zip(p.top_self, p.top_total, strict=False):
                out.append(f"| `{a}` | {sa:.0%} | | `{b}` | {sb:.0%} |")
            out.append(f"\nCollapsed stacks: `{p.raw_file}`.")
    out += ["", "## Rounds", "",
            "| workers | round | mode | photos | done | dead | s | photos/s | offered/s | p50 | p95 | p99 | floor/s | Pillow/s "
            "| thumbor/s |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in report.configs:
        for r in c.rounds:
            for run, label in [(r.e2e, "max")] + [(fx.run, f"{fx.fraction:g}×") for fx in r.fixed]:
                is_max = run is r.e2e
                out.append(
                    f"| `{c.workers}` | {r.index} | {label} | {run.photos} | {run.completed} | {run.dead_lettered} | "
                    f"{run.seconds:.1f} | {run.photos_per_s:.2f} | {run.offered_per_s:.2f} | {_ms(run.latency_ms.p50)} | "
                    f"{_ms(run.latency_ms.p95)} | {_ms(run.latency_ms.p99)} | "
                    f"{_f(r.floor.photos_per_s) if is_max and r.floor else ''} | "
                    f"{_f(r.pillow.photos_per_s) if is_max and r.pillow else ''} | "
                    f"{_f(r.thumbor.photos_per_s) if is_max and r.thumbor else ''} |")
    return "\n".join(out) + "\n"


def _cpu_table(report: Report) -> list[str]:
    """CPU ms per photo of every process during the max-rate runs (median over rounds), beside the floor's."""
    from bench.stats import median

    labels = sorted({label for c in report.configs for r in c.rounds for label in r.e2e.cpu_s})
    if not labels:
        return []
    out = ["", "## CPU per photo, max-rate runs (ms of CPU per photo, median over rounds)", "",
           "| process | " + " | ".join(f"`{_short(c.workers)}`" for c in report.configs) + " |",
           "|---|" + "---:|" * len(report.configs)]

    def per_photo(c: ConfigResult, pick: str | None) -> float | None:
        return median([(sum(r.e2e.cpu_s.values()) if pick is None else r.e2e.cpu_s.get(pick, 0.0)) * 1000 / r.e2e.photos
                       for r in c.rounds if r.e2e.cpu_s])

    for label in labels + [None]:
        name = "**all of the above**" if label is None else label
        out.append(f"| {name} | " + " | ".join(_ms(per_photo(c, label)) for c in report.configs) + " |")
    floor = [median([r.floor.cpu_ms_per_photo for r in c.rounds if r.floor]) for c in report.configs]
    out.append("| compute floor (fused chain in-process, same photos) | " + " | ".join(_ms(f) for f in floor) + " |")
    thumbor = [median([r.thumbor.cpu_ms_per_photo for r in c.rounds if r.thumbor]) for c in report.configs]
    if any(t is not None for t in thumbor):
        out.append("| thumbor (its processes, same photos) | " + " | ".join(_ms(t) for t in thumbor) + " |")
    return out


def _scaling_table(report: Report) -> list[str]:
    """How cost grows: photos/s and CPU per photo against photo size and against workers per core."""
    if not report.scaling:
        return []
    out = ["", "## How cost grows (photos/s and CPU ms per photo; e2e CPU = every process on the path)", "",
           "| series | megapixels | image workers per core | photos | e2e photos/s | e2e CPU ms/photo | floor photos/s "
           "| floor CPU ms/photo | cores ÷ e2e CPU/photo |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    cores = report.machine.cores
    for p in report.scaling:
        model = cores * 1000 / p.e2e_cpu_ms_per_photo if p.e2e_cpu_ms_per_photo else None
        out.append(f"| {p.series} | {p.megapixels:.0f} | {p.workers_per_core:g} | {p.photos} | {_f(p.e2e_photos_per_s)} | "
                   f"{_ms(p.e2e_cpu_ms_per_photo)} | {_f(p.floor_photos_per_s)} | {_ms(p.floor_cpu_ms_per_photo)} | "
                   f"{_f(model)} |")
    if report.size_series_peak_rss_mib is not None:
        out.append(f"\nLargest image-worker peak RSS after the photo-size series (up to 48 MP): "
                   f"{report.size_series_peak_rss_mib:.0f} MiB (the peak-RSS table and target are the benchmark corpus's).")
    return out


def write_chart(report: Report, path: Path) -> Path | None:
    """A PNG with throughput, latency and memory side by side; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: files only
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = 2 if report.scaling else 1
    fig, axes = plt.subplots(rows, 3, figsize=(15, 4.5 * rows), squeeze=False)
    ax_tp, ax_lat, ax_mem = axes[0]
    labels, values = [], []
    for c in report.configs:
        labels.append("fleet\n" + _short(c.workers))
        values.append(c.summary.photos_per_s or 0.0)
    main = next((c for c in report.configs if c.main), report.configs[-1])
    labels += ["floor\n(fused, in-process)", "Pillow", "thumbor"]
    values += [main.summary.floor_photos_per_s or 0.0, main.summary.pillow_photos_per_s or 0.0,
               main.summary.thumbor_photos_per_s or 0.0]
    ax_tp.bar(labels, values, color=["#4477aa"] * len(report.configs) + ["#228833", "#ccbb44", "#ee6677"])
    ax_tp.set_ylabel("photos / s (median)")
    ax_tp.set_title("Throughput")
    ax_tp.tick_params(axis="x", labelsize=7)

    for c in report.configs:
        points = [("max", c.summary.p50_ms, c.summary.p95_ms, c.summary.p99_ms)]
        points += [(f"{f.fraction:g}x", f.p50_ms, f.p95_ms, f.p99_ms) for f in c.summary.fixed]
        for pct, idx, marker in (("p50", 1, "o"), ("p95", 2, "s"), ("p99", 3, "^")):
            ax_lat.plot([f"{_short(c.workers)}\n{p[0]}" for p in points], [(p[idx] or 0) / 1000 for p in points],
                        marker=marker, linestyle="none", label=f"{pct} {_short(c.workers)}")
    ax_lat.set_ylabel("seconds, PUT → gallery.updated")
    ax_lat.set_title("Latency per photo")
    ax_lat.tick_params(axis="x", labelsize=7)
    ax_lat.legend(fontsize=6)

    mem = [(f"{w.stage} {w.pid}\n{_short(c.workers)}", w.peak_rss_mib) for c in report.configs for w in c.memory]
    if mem:
        ax_mem.bar([m[0] for m in mem], [m[1] for m in mem], color="#aa3377")
    ax_mem.axhline(RSS_LIMIT_MIB, color="black", linestyle="--", linewidth=1, label=f"{RSS_LIMIT_MIB:.0f} MiB target")
    ax_mem.set_ylabel("peak RSS, MiB")
    ax_mem.set_title("Worker memory")
    ax_mem.tick_params(axis="x", labelsize=6, rotation=90)
    ax_mem.legend(fontsize=7)
    if report.scaling:
        _plot_scaling(report, axes[1])
    fig.suptitle(f"darkroom bench · {report.machine.cores} cores · {report.machine.date[:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_scaling(report: Report, axes: Any) -> None:
    """Second row: photos/s and CPU per photo against megapixels, and against image workers per core."""
    for ax, series, x_of, x_label in (
        (axes[0], "photo size", lambda p: p.megapixels, "megapixels per photo (main fleet)"),
        (axes[1], "workers per core", lambda p: p.workers_per_core, "image workers per core"),
    ):
        points = sorted((p for p in report.scaling if p.series == series), key=x_of)
        if not points:
            ax.set_visible(False)
            continue
        xs = [x_of(p) for p in points]
        ax.plot(xs, [p.e2e_photos_per_s or 0 for p in points], marker="o", color="#4477aa", label="end to end photos/s")
        ax.plot(xs, [p.floor_photos_per_s or 0 for p in points], marker="s", color="#228833", label="floor photos/s")
        ax.set_xlabel(x_label)
        ax.set_ylabel("photos / s")
        twin = ax.twinx()
        twin.plot(xs, [p.e2e_cpu_ms_per_photo or 0 for p in points], marker="o", linestyle="--", color="#aa3377",
                  label="e2e CPU ms/photo")
        twin.plot(xs, [p.floor_cpu_ms_per_photo or 0 for p in points], marker="s", linestyle="--", color="#ccbb44",
                  label="floor CPU ms/photo")
        twin.set_ylabel("CPU ms per photo (dashed)")
        ax.set_title(f"How cost grows: {series}")
        ax.legend(fontsize=6, loc="upper left")
        twin.legend(fontsize=6, loc="upper right")
    axes[2].set_visible(False)


def _short(workers: str) -> str:
    """`ingest=1,resize=2,thumbnail=2` → `i1 r2 t2`, for chart labels."""
    return " ".join(f"{item.split('=')[0][0]}{item.split('=')[1]}" for item in workers.split(",") if "=" in item)


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """report.json, report.md and report.png (when matplotlib is installed) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths["json"].write_text(report.model_dump_json(indent=1))
    paths["markdown"].write_text(to_markdown(report))
    chart = write_chart(report, out_dir / "report.png")
    if chart is not None:
        paths["chart"] = chart
    return paths
