"""The two in-process references: the compute floor (pyvips) and the Pillow baseline.

The floor is the best in-process path: the fleet's own rendition graph (the pipeline file) made by
the fused chain (stages/fused_stage.py, `FusedChain.make_all`), i.e. the same bound transforms a
fused worker runs, every derived rendition from its parent's pixels in memory, without Kafka,
storage or events. So end to end / floor measures the fleet's overhead and nothing else.

Both make the studio rendition set from local files, no Kafka, no S3, with one process per core
(as many as the fleet could use), each process taking the next photo from a shared queue. Processes
start, load their libraries and make one untimed warm-up set before the clock starts, so the
figure is steady-state photos per second, like the fleet's (whose start-up is not counted either).

    python -m bench.offline --photos 20     # both, on a corpus of 20 photos
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from bench.memory import peak_rss_mib

Kind = Literal["floor", "pillow", "thumbor"]
_STOP = None


class OfflineResult(BaseModel):
    """One timed pass of a reference over the corpus."""

    kind: Kind
    processes: int
    photos: int
    seconds: float
    photos_per_s: float
    peak_rss_mib: float  # the largest VmHWM among the processes
    renditions: int  # renditions made (3 per photo): proves the work was done
    cpu_ms_per_photo: float = 0.0  # CPU time (every thread) of the timed part, per photo


def floor_chain(pipeline_file: Path | None) -> Callable[[bytes], int]:
    """The fused chain of `pipeline_file`'s graph (every image stage), bound as a worker binds it."""
    from pipeline.contracts.renditions import load_rendition_graph
    from pipeline.settings import ImagingSettings
    from stages.fused_stage import FusedChain
    from stages.image_stages import IMAGE_STAGES, BindContext, bound_renditions
    from stages.imaging import ImageLimits

    graph = load_rendition_graph(pipeline_file)
    base_dir = pipeline_file.resolve().parent if pipeline_file else Path.cwd()
    ctx = BindContext(ImageLimits.from_settings(ImagingSettings()), _NoStore(), base_dir)  # type: ignore[arg-type]
    chain = FusedChain(graph, {stage: bound_renditions(stage, graph, ctx) for stage in IMAGE_STAGES})
    return lambda original: len(chain.make_all(original))


class _NoStore:
    """The floor reads no storage: a logo at `s3://` must be a file for it."""

    bucket = "none"

    def get(self, key: str) -> bytes:
        raise RuntimeError(f"the compute floor reads no storage; give the watermark logo {key!r} as a file")


def _set_maker(kind: Kind, vips_concurrency: int, pipeline_file: str | None = None) -> Callable[[bytes], int]:
    """The rendition set of `kind`, prepared once per process; returns how many renditions it made."""
    if kind == "floor":
        from stages.imaging import configure_vips

        configure_vips(vips_concurrency)  # as a worker: the same libvips threads per operation
        return floor_chain(Path(pipeline_file) if pipeline_file else None)
    from bench.pillow_set import make_logo, pillow_set

    logo = make_logo()
    return lambda original: len(pillow_set(original, logo))


def _worker(kind: Kind, vips_concurrency: int, pipeline_file: str | None, warmup: str, tasks: mp.Queue,  # type: ignore[type-arg]
            ready: mp.Queue, start: mp.synchronize.Event, results: mp.Queue) -> None:  # type: ignore[type-arg]
    make = _set_maker(kind, vips_concurrency, pipeline_file)
    make(Path(warmup).read_bytes())
    ready.put(True)
    start.wait()
    made = 0
    cpu_began = time.process_time()
    while (path := tasks.get()) is not _STOP:
        made += make(Path(path).read_bytes())  # reading is part of the work, as a worker's GET is
    results.put((made, peak_rss_mib() or 0.0, time.process_time() - cpu_began))


def _get(source: mp.Queue, procs: list[mp.process.BaseProcess], deadline: float, kind: str) -> Any:  # type: ignore[type-arg]
    """The next item of `source`; fails as soon as a process has died instead of waiting for the deadline."""
    while True:
        try:
            return source.get(timeout=0.5)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"{kind}: a reference process died (exit codes {dead})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: the reference processes did not finish in time") from None


def run_offline(kind: Kind, paths: list[Path], processes: int, vips_concurrency: int = 1,
                timeout_s: float = 1800.0, pipeline_file: Path | None = None) -> OfflineResult:
    """Time `kind` over `paths` with `processes` processes; start-up and warm-up are not timed.

    The floor makes `pipeline_file`'s renditions (None: the built-in graph, `web` only).
    """
    if not paths:
        raise ValueError("no photos")
    # spawn, not fork: the parent may hold librdkafka and libvips threads, which fork does not copy.
    ctx = mp.get_context("spawn")
    tasks, ready, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    start = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(kind, vips_concurrency, str(pipeline_file) if pipeline_file else None, str(paths[0]),
                               tasks, ready, start, results),
                         daemon=True) for _ in range(processes)]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + timeout_s
    try:
        for _ in procs:
            _get(ready, procs, deadline, kind)
        for path in paths:
            tasks.put(str(path))
        for _ in procs:
            tasks.put(_STOP)
        began = time.perf_counter()
        start.set()
        outcomes = [_get(results, procs, deadline, kind) for _ in procs]
        seconds = time.perf_counter() - began
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    return OfflineResult(
        kind=kind, processes=processes, photos=len(paths), seconds=seconds, photos_per_s=len(paths) / seconds,
        peak_rss_mib=max(peak for _, peak, _ in outcomes), renditions=sum(made for made, _, _ in outcomes),
        cpu_ms_per_photo=sum(cpu for _, _, cpu in outcomes) * 1000 / len(paths),
    )


def main() -> None:
    """Run both references once on a generated corpus and print photos per second."""
    import os

    from bench.corpus import build

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--corpus", type=Path, default=Path(".darkroom/bench/corpus"))
    args = parser.parse_args()
    paths = build(args.corpus, args.photos)
    for kind in ("floor", "pillow"):
        r = run_offline(kind, paths, args.processes, pipeline_file=Path("examples/pipeline.yaml"))  # type: ignore[arg-type]
        print(f"{kind:7} {r.photos_per_s:6.2f} photos/s ({r.photos} in {r.seconds:.1f}s, {r.processes} processes, "
              f"peak RSS {r.peak_rss_mib:.0f} MiB)")


if __name__ == "__main__":
    main()
