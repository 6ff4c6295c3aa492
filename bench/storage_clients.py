"""Storage client benchmark: boto3 vs minio on the same S3 server, in one process.

Run: ``python -m bench.storage_clients --size-mb 10 --runs 7`` (uses ``Settings().storage``, so
``DARKROOM_STORAGE__*`` points it at another server). Each run puts then gets one random object per
client through our adapters (what the stages actually use), alternating which client goes first
so neither always gets the warmer server, page cache or CPU frequency.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
import uuid
from dataclasses import dataclass, field

from pipeline.settings import Settings, StorageSettings
from storage.factory import open_store
from storage.port import ObjectStore

CLIENTS = ("boto3", "minio")
OPS = ("put", "get")


@dataclass
class Samples:
    """Seconds per operation for one client."""

    put: list[float] = field(default_factory=list)
    get: list[float] = field(default_factory=list)


def percentile_seconds(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: with 7 runs, p90 is the slowest run)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def run(settings: StorageSettings, size_bytes: int, runs: int, warmup: int) -> dict[str, Samples]:
    """Time ``runs`` put+get rounds per client after ``warmup`` untimed rounds; return the samples."""
    stores: dict[str, ObjectStore] = {
        name: open_store(settings.model_copy(update={"client": name})) for name in CLIENTS
    }
    stores["boto3"].ensure_bucket()
    payload = os.urandom(size_bytes)
    prefix = f"bench/storage-clients/{uuid.uuid4().hex[:8]}"
    samples = {name: Samples() for name in CLIENTS}
    try:
        for round_no in range(warmup + runs):
            order = CLIENTS if round_no % 2 == 0 else tuple(reversed(CLIENTS))
            for name in order:
                store = stores[name]
                key = f"{prefix}/{name}-{round_no}.bin"
                started = time.perf_counter()
                store.put(key, payload)
                put_s = time.perf_counter() - started
                started = time.perf_counter()
                data = store.get(key)
                get_s = time.perf_counter() - started
                if data != payload:
                    raise RuntimeError(f"{name}: object {key} came back different")
                store.delete(key)
                if round_no >= warmup:
                    samples[name].put.append(put_s)
                    samples[name].get.append(get_s)
    finally:
        for info in list(stores["boto3"].list(prefix + "/")):
            stores["boto3"].delete(info.key)
    return samples


def report(samples: dict[str, Samples], size_bytes: int, runs: int, endpoint: str) -> str:
    """Markdown table: median and p90 (slow tail) MB/s per client and op, and minio/boto3 ratios."""
    mb = size_bytes / 1e6
    lines = [
        f"object {mb:g} MB, {runs} timed runs per client and op, endpoint {endpoint}",
        "",
        "| op | client | median MB/s | p90 MB/s (slow tail) | median ms |",
        "|---|---|---:|---:|---:|",
    ]
    medians: dict[tuple[str, str], float] = {}
    for op in OPS:
        for name in CLIENTS:
            seconds: list[float] = getattr(samples[name], op)
            median_s = statistics.median(seconds)
            p90_s = percentile_seconds(seconds, 90)
            medians[(op, name)] = mb / median_s
            lines.append(
                f"| {op} | {name} | {mb / median_s:.0f} | {mb / p90_s:.0f} | {median_s * 1000:.1f} |"
            )
    lines.append("")
    for op in OPS:
        ratio = medians[(op, "minio")] / medians[(op, "boto3")]
        lines.append(f"- {op}: minio/boto3 median throughput ratio = {ratio:.2f}")
    return "\n".join(lines)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=10.0, help="object size in MB (10^6 bytes)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per client")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per client first")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    settings = Settings().storage
    size_bytes = int(args.size_mb * 1_000_000)
    samples = run(settings, size_bytes, args.runs, args.warmup)
    print(f"machine: {platform.platform()}, nproc={os.cpu_count()}, python {platform.python_version()}")
    print(report(samples, size_bytes, args.runs, settings.endpoint_url))


if __name__ == "__main__":
    main()
