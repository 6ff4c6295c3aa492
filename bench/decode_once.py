"""CPU cost of a photo's rendition set: the decode-once graph versus every rendition from the original.

    python -m bench.decode_once --runs 5

Makes one seeded 24-megapixel JPEG (6000x4000) and the studio set of examples/pipeline.yaml:
`web` (resize, long edge 2048, JPEG q85), `thumb` (thumbnail 400x400 cover, attention crop, WebP)
and `proof` (logo bottom-right, 40 % opacity, 20 % of the width, JPEG), with the stages' own
transforms. Two ways:

- decode once (the graph): web from the original; thumb and proof from web's JPEG bytes;
- from the original: each rendition decodes the original itself (the proof fits it to 2048 first,
  so both ways make the same three renditions);
- fused (a fused worker, stages/fused_stage.py): web from the original, then thumb and proof from
  web's pixels in memory (no second decode).

`--tagged` embeds an sRGB ICC profile in the original (as cameras and phones do), so every decode
of the original goes through a colour transform; renditions are untagged sRGB, so decodes of
`web` never do.

CPU time is `time.process_time()` (every thread of the process) around one whole set, libvips
concurrency 1 as in a worker. One untimed warm-up set per way, then the ways alternate for
`--runs` runs; the medians and their ratio come from the same invocation.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pyvips

from operations.samples import sample_jpeg
from pipeline.contracts.renditions import ResizeSpec, ThumbnailSpec, WatermarkSpec
from stages.imaging import ImageLimits, OutputOptions, Rendition, as_parent, configure_vips, encode, vips_errors
from stages.resize import resize, resize_pixels
from stages.thumbnail import thumbnail
from stages.watermark import prepare_watermark, watermark

LIMITS = ImageLimits()
WEB = ResizeSpec(stage="resize", long_edge=2048, quality=85)
THUMB = ThumbnailSpec(stage="thumbnail", width=400, height=400, fit="cover", crop="attention", format="webp")


def _logo() -> bytes:
    """A 600x200 white logo with 80 % alpha, as a studio would supply."""
    rgb = (pyvips.Image.black(600, 200, bands=3) + 255).cast("uchar")
    return rgb.bandjoin(204).copy(interpretation="srgb").pngsave_buffer()


def _proof(long_edge: int | None) -> WatermarkSpec:
    return WatermarkSpec(stage="watermark", image="logo.png", position="bottom-right", offset_x=24, offset_y=24,
                         opacity=0.4, scale=0.2, long_edge=long_edge)


RenditionSet = Callable[[bytes], list[Rendition]]


def make_sets() -> dict[str, RenditionSet]:
    """The two ways of making the set; the watermarks are prepared here, once, as a worker does."""
    logo = _logo()
    proof_from_web = prepare_watermark(_proof(None), logo, LIMITS)
    proof_from_original = prepare_watermark(_proof(2048), logo, LIMITS)

    def decode_once(original: bytes) -> list[Rendition]:
        web = resize(original, WEB, LIMITS)
        return [web, thumbnail(web.data, THUMB, LIMITS), watermark(web.data, proof_from_web, LIMITS)]

    def from_original(original: bytes) -> list[Rendition]:
        return [resize(original, WEB, LIMITS), thumbnail(original, THUMB, LIMITS),
                watermark(original, proof_from_original, LIMITS)]

    def fused(original: bytes) -> list[Rendition]:
        pixels = resize_pixels(original, WEB, LIMITS)
        with vips_errors(pixels.what):
            web = as_parent(pixels.image, keep_copyright=WEB.keep_copyright)
        return [encode(web, OutputOptions.from_spec(WEB), what=pixels.what), thumbnail(web, THUMB, LIMITS),
                watermark(web, proof_from_web, LIMITS)]

    return {"decode-once": decode_once, "from-original": from_original, "fused": fused}


def _cpu_ms(run: RenditionSet, original: bytes) -> tuple[float, list[Rendition]]:
    start = time.process_time()
    out = run(original)
    return (time.process_time() - start) * 1000, out


def _machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return (f"{os.cpu_count()} vCPU ({model}), {platform.system()} {platform.release()} {platform.machine()}, "
            f"Python {platform.python_version()}, libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, "
            f"pyvips {pyvips.__version__}")


def main() -> None:
    """Run the benchmark and print the figures as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--tagged", action="store_true",
                        help="embed an sRGB ICC profile in the original, as most cameras and phones do")
    args = parser.parse_args()

    configure_vips(1)  # as a worker: one libvips thread per operation
    original = sample_jpeg(args.width, args.height, args.seed)
    if args.tagged:  # same pixels, plus the profile: every decode of it is then colour-managed
        original = pyvips.Image.new_from_buffer(original, "").jpegsave_buffer(Q=90, profile="srgb", keep="icc")
    sets = make_sets()
    shapes = {}
    for name, run in sets.items():  # warm-up: libraries loaded, watermark scaled copy cached
        _, out = _cpu_ms(run, original)
        shapes[name] = [(r.width, r.height, r.format) for r in out]
    assert shapes["decode-once"] == shapes["from-original"] == shapes["fused"], shapes  # the same renditions every way

    times: dict[str, list[float]] = {name: [] for name in sets}
    for i in range(args.runs):
        order = list(sets) if i % 2 == 0 else list(reversed(sets))  # alternate who goes first
        for name in order:
            times[name].append(_cpu_ms(sets[name], original)[0])

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"input: {args.width}x{args.height} JPEG ({len(original) / 1e6:.1f} MB, seed {args.seed}, "
          f"{'sRGB ICC profile embedded' if args.tagged else 'untagged'}); "
          f"renditions: {shapes['decode-once']}")
    print(f"machine: {_machine()}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d}, runs: {args.runs}\n")
    print("| way | median CPU ms / photo | min | max |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {medians[name]:.0f} | {min(values):.0f} | {max(values):.0f} |")
    print(f"\nfrom-original / decode-once: **{medians['from-original'] / medians['decode-once']:.2f}x**; "
          f"decode-once / fused: **{medians['decode-once'] / medians['fused']:.2f}x**")


if __name__ == "__main__":
    main()
