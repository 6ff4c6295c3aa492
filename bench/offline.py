"""The two in-process references: the compute floor (pyvips) and the Pillow baseline.

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

Kind = Literal["floor", "pillow"]
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


def _set_maker(kind: Kind, vips_concurrency: int) -> Callable[[bytes], int]:
    """The rendition set of `kind`, prepared once per process; returns how many renditions it made."""
    if kind == "floor":
        from bench.decode_once import make_sets
        from stages.imaging import configure_vips

        configure_vips(vips_concurrency)  # as a worker: the same libvips threads per operation
        decode_once = make_sets()["decode-once"]
        return lambda original: len(decode_once(original))
    from bench.pillow_set import make_logo, pillow_set

    logo = make_logo()
    return lambda original: len(pillow_set(original, logo))


def _worker(kind: Kind, vips_concurrency: int, warmup: str, tasks: mp.Queue, ready: mp.Queue,  # type: ignore[type-arg]
            start: mp.synchronize.Event, results: mp.Queue) -> None:  # type: ignore[type-arg]
    make = _set_maker(kind, vips_concurrency)
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
                timeout_s: float = 1800.0) -> OfflineResult:
    """Time `kind` over `paths` with `processes` processes; start-up and warm-up are not timed."""
    if not paths:
        raise ValueError("no photos")
    # spawn, not fork: the parent may hold librdkafka and libvips threads, which fork does not copy.
    ctx = mp.get_context("spawn")
    tasks, ready, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    start = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(kind, vips_concurrency, str(paths[0]), tasks, ready, start, results),
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
        r = run_offline(kind, paths, args.processes)  # type: ignore[arg-type]
        print(f"{kind:7} {r.photos_per_s:6.2f} photos/s ({r.photos} in {r.seconds:.1f}s, {r.processes} processes, "
              f"peak RSS {r.peak_rss_mib:.0f} MiB)")


if __name__ == "__main__":
    main()
