"""What a reconcile pass costs in LIST calls and time: a full sweep versus an incremental pass.

Run: ``python -m bench.reconcile_list --objects 5000 --shoots 50 --runs 5`` against the local stack
(``darkroom dev up``; ``DARKROOM_STORAGE__*`` points it elsewhere). It writes OBJECTS tiny originals
over SHOOTS shoots into a bucket of its own (made once, reused by later runs), then times, through
our store adapter (what the reconciler uses):

- a full sweep's listing of ``originals/shoots/`` (one LIST call per 1,000 keys);
- an incremental pass's listing of one shoot's prefix ``originals/shoots/{shoot}/``;

and extrapolates both to 100,000 originals (LIST cost is linear in keys: one call per 1,000).

With ``--files-events N`` it also times the Kafka side of a full sweep, `announced` (all of
`files`, filtered on headers), after producing N small `file.uploaded`-typed messages to `files`.
Only on a stack of your own with no worker running: those messages are not valid events.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from pipeline.contracts.events import FILE_UPLOADED
from pipeline.contracts.topics import FILES
from pipeline.envelope import H_EVENT_TYPE
from pipeline.kafka_config import producer_config
from pipeline.publisher import Outgoing, Publisher
from pipeline.settings import Settings
from stages.ingest.reconciler import announced
from storage.factory import open_store
from storage.keys import ORIGINALS_PREFIX, original_key, originals_prefix
from storage.port import ObjectStore

PAGE = 1000  # keys per LIST call (the S3 maximum, and what both adapters ask for)
TARGET = 100_000


def fill(store: ObjectStore, objects: int, shoots: int) -> None:
    """Put `objects` tiny originals over `shoots` shoots, unless the bucket holds them already."""
    present = sum(1 for _ in store.list(ORIGINALS_PREFIX))
    if present >= objects:
        return
    keys = [original_key(f"bench-shoot-{i % shoots:04d}", f"photo-{i:06d}", "jpg") for i in range(objects)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put(k, b"\xff\xd8\xff", content_type="image/jpeg"), keys))


def timed_list(store: ObjectStore, prefix: str) -> tuple[float, int]:
    started = time.perf_counter()
    count = sum(1 for _ in store.list(prefix))
    return time.perf_counter() - started, count


def time_announced(settings: Settings, events: int, runs: int) -> None:
    """Produce `events` header-typed messages to `files`, then time reading all of `files` as a full sweep does."""
    publisher = Publisher(producer_config(settings))
    try:
        for i in range(events):
            publisher.produce(Outgoing(FILES, f"bench-file-{i:07d}".encode(), b"{}", [(H_EVENT_TYPE, FILE_UPLOADED.encode())]),
                              lambda _err: None)
        publisher.flush(120)
    finally:
        publisher.close()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        known = len(announced(settings, settings.storage.bucket))
        times.append(time.perf_counter() - started)
    med = statistics.median(times)
    print(f"reading `files` for file.uploaded: {known:,} file ids known, {med:.2f} s ({known / med:,.0f} ids/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--shoots", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bucket", default="bench-reconcile")
    parser.add_argument("--files-events", type=int, default=0,
                        help="Also time reading `files` (announced) after producing this many messages to `files` (own stack only).")
    args = parser.parse_args()
    settings = Settings()
    store = open_store(settings.storage.model_copy(update={"bucket": args.bucket}))
    store.ensure_bucket()
    fill(store, args.objects, args.shoots)

    full, one = [], []
    for _ in range(args.runs):
        seconds, count = timed_list(store, ORIGINALS_PREFIX)
        full.append(seconds)
        shoot_s, shoot_count = timed_list(store, originals_prefix("bench-shoot-0000"))
        one.append(shoot_s)
    full_med, one_med = statistics.median(full), statistics.median(one)
    calls = math.ceil(count / PAGE)
    per_call = full_med / calls
    print(f"machine: {platform.machine()}, {platform.system()} {platform.release()}; "
          f"S3 {settings.storage.endpoint_url} ({settings.storage.client}); median of {args.runs} runs")
    print(f"full sweep listing: {count} keys, {calls} LIST calls, {full_med:.3f} s "
          f"({per_call * 1000:.1f} ms per call, {count / full_med:,.0f} keys/s)")
    print(f"one shoot's prefix: {shoot_count} keys, {math.ceil(shoot_count / PAGE)} LIST call(s), {one_med * 1000:.1f} ms")
    print(f"extrapolated to {TARGET:,} originals: full sweep {math.ceil(TARGET / PAGE)} LIST calls, "
          f"~{TARGET / count * full_med:.1f} s of listing; an incremental pass lists only active shoots "
          f"(~{one_med * 1000:.0f} ms per shoot of up to 1,000 photos)")
    if args.files_events:
        time_announced(settings, args.files_events, args.runs)


if __name__ == "__main__":
    main()
