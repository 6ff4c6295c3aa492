"""What a photo costs by format: decode + the `web` rendition of a 12 MP HEIC, JPEG and camera RAW.

    python -m bench.formats --runs 7

One seeded 12-megapixel picture (4032x3024, what an iPhone's main camera saves) in each format,
the same pixels throughout, each made into `web` (resize, long edge 2048, JPEG q85) by the resize
stage's own transform (`stages.resize.resize`), plus the capture-facts header read
(`read_capture_facts`) and the thumbnail placeholder (`blurhash`) where it applies:

- `jpeg`: the JPEG, untagged (shrink-on-load; the cheap case);
- `jpeg-p3`: the JPEG with a Display P3 profile (every decode colour-managed, like a phone JPEG);
- `heic-p3`: HEIC 8-bit, P3, EXIF orientation 6 (an iPhone photo), decoded by pillow-heif;
- `heic-p3-10bit`: the same at 10 bits (decoded to 16 bits, transformed, then 8-bit);
- `raw-preview`: a 24 MP NEF-like file with a full-size 6000x4000 preview JPEG (the usual camera
  case: the preview serves, LibRaw is never called);
- `dng-demosaic`: a 12 MP DNG without preview: LibRaw demosaic (AHD, camera white balance, sRGB).

CPU time is `time.process_time()` (every thread: pillow-heif's libheif decodes with up to 4
threads), wall time `time.perf_counter()`; libvips concurrency 1, as in a worker. One untimed
warm-up per case, then the cases alternate for `--runs` runs; medians from the same invocation.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pyvips

from bench.decode_once import _machine
from operations.samples import sample_jpeg
from pipeline.contracts.renditions import ResizeSpec
from stages.imaging import ImageLimits, configure_vips
from stages.imaging.facts import read_capture_facts
from stages.imaging.placeholder import blurhash
from stages.resize import resize

LIMITS = ImageLimits()
WEB = ResizeSpec(stage="resize", long_edge=2048, quality=85)


def make_inputs(width: int, height: int, seed: int) -> dict[str, bytes]:
    """Each format's file of the same seeded picture (tests/imagefiles.py writes the HEIC and RAW)."""
    from tests.imagefiles import make_dng, make_heic, make_vendor_raw, p3_profile

    jpeg = sample_jpeg(width, height, seed)
    pixels = pyvips.Image.new_from_buffer(jpeg, "").numpy()
    p3 = p3_profile()
    tagged = pyvips.Image.new_from_buffer(jpeg, "").copy()
    tagged.set_type(pyvips.GValue.blob_type, "icc-profile-data", p3)
    preview = sample_jpeg(6000, 4000, seed)
    return {
        "jpeg": jpeg,
        "jpeg-p3": tagged.jpegsave_buffer(Q=90, keep="icc"),
        # Stored on its side, as the phone's sensor saw it, with the rotation in the container.
        "heic-p3": make_heic(np.ascontiguousarray(np.rot90(pixels, 1)), orientation=6, icc=p3, quality=90),
        "heic-p3-10bit": make_heic(np.ascontiguousarray(np.rot90(pixels, 1)).astype(np.uint16) * 257,
                                   orientation=6, icc=p3, quality=90),
        "raw-preview": make_vendor_raw("nef", 6000, 4000, preview=preview),
        "dng-demosaic": make_dng(width, height, (0.45, 0.35, 0.25)),
    }


def _case(data: bytes) -> Callable[[], tuple[int, int]]:
    def run() -> tuple[int, int]:
        web = resize(data, WEB, LIMITS)
        read_capture_facts(data, limits=LIMITS, original_name="IMG.X")
        blurhash(pyvips.Image.new_from_buffer(web.data, "").thumbnail_image(400))
        return web.width, web.height

    return run


def main() -> None:
    """Run the benchmark and print the figures as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--width", type=int, default=4032)
    parser.add_argument("--height", type=int, default=3024)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()

    configure_vips(1)
    inputs = make_inputs(args.width, args.height, args.seed)
    cases = {name: _case(data) for name, data in inputs.items()}
    shapes = {name: run() for name, run in cases.items()}  # warm-up: libraries loaded
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(args.runs):
        for name in (list(cases) if i % 2 == 0 else list(reversed(cases))):
            c0, w0 = time.process_time(), time.perf_counter()
            cases[name]()
            cpu[name].append((time.process_time() - c0) * 1000)
            wall[name].append((time.perf_counter() - w0) * 1000)

    print(f"input: {args.width}x{args.height} (seed {args.seed}); web = long edge 2048, JPEG q85")
    print(f"machine: {_machine()}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d}, runs: {args.runs}\n")
    base = statistics.median(cpu["jpeg"])
    print("| case | file MB | web | median CPU ms | median wall ms | min–max CPU ms | CPU vs jpeg |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name in cases:
        med = statistics.median(cpu[name])
        print(f"| {name} | {len(inputs[name]) / 1e6:.1f} | {shapes[name][0]}x{shapes[name][1]} | {med:.0f} | "
              f"{statistics.median(wall[name]):.0f} | {min(cpu[name]):.0f}–{max(cpu[name]):.0f} | {med / base:.1f}x |")
    _parts(inputs, args.runs)


def _parts(inputs: dict[str, bytes], runs: int) -> None:
    """The per-photo extras alone: the capture-facts header read, and a BlurHash of a thumbnail."""
    def median_ms(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(runs):
            start = time.process_time()
            fn()
            times.append((time.process_time() - start) * 1000)
        return statistics.median(times)

    print("\n| case | capture facts (header) median CPU ms |")
    print("|---|---:|")
    for name, data in inputs.items():
        print(f"| {name} | {median_ms(lambda d=data: read_capture_facts(d, limits=LIMITS)):.2f} |")
    thumb = pyvips.Image.new_from_buffer(resize(inputs["jpeg"], WEB, LIMITS).data, "").thumbnail_image(400).copy_memory()
    print(f"\nBlurHash of a 400 px thumbnail (in memory): {median_ms(lambda: blurhash(thumb)):.2f} ms median CPU")


if __name__ == "__main__":
    main()
