"""The watermark transform: a logo or a text over the photo. Pure; no Kafka, no storage.

The mark is prepared once per worker (`prepare_watermark`: decoded or rendered, opacity applied,
held in memory); per photo only its scaled copy is made (and cached per photo size, since most
photos of a graph share the width of their source rendition) and composited.
"""

from __future__ import annotations

import html
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import pyvips

from pipeline.contracts.renditions import WatermarkSpec
from stages.imaging import (
    ImageLimits,
    ImageRejected,
    OutputOptions,
    Pixels,
    Rendition,
    Source,
    encode,
    fit_image,
    load_image,
    vips_errors,
)
from stages.imaging.vips_setup import ensure_vips_safety

# Text is rendered once, this wide, so scaling it to any photo is a reduction (sharp), not an enlargement.
_TEXT_WIDTH_PX = 2000
_TEXT_FONT = "sans bold"
_SCALED_CACHE_SIZE = 16


class WatermarkConfigError(ValueError):
    """The watermark cannot be prepared (missing or unreadable logo); the worker refuses to start."""


def _rgba(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB with an alpha band (opaque when the source had none)."""
    if not image.hasalpha():
        image = image.bandjoin(255)
    return image.cast("uchar").copy(interpretation="srgb")


def _with_opacity(mark: pyvips.Image, opacity: float) -> pyvips.Image:
    if opacity >= 1:
        return mark
    return mark.extract_band(0, n=3).bandjoin((mark.extract_band(3) * opacity).cast("uchar")).copy(interpretation="srgb")


def _render_text(text: str) -> pyvips.Image:
    """White text with a soft dark shadow (readable on light and dark photos), as RGBA."""
    # libvips renders Pango markup: escape it so "Smith & Co <studio>" is drawn as written.
    markup = html.escape(text, quote=False)
    probe = pyvips.Image.text(markup, font=_TEXT_FONT, dpi=72)
    dpi = max(72, min(2400, round(72 * _TEXT_WIDTH_PX / max(1, probe.width))))
    mask = pyvips.Image.text(markup, font=_TEXT_FONT, dpi=dpi)
    pad = max(2, mask.height // 10)
    mask = mask.embed(pad, pad, mask.width + 2 * pad, mask.height + 2 * pad)
    shadow = mask.gaussblur(pad / 2).cast("uchar")
    black = (pyvips.Image.black(mask.width, mask.height, bands=3)).cast("uchar").bandjoin(shadow)
    white = (pyvips.Image.black(mask.width, mask.height, bands=3) + 255).cast("uchar").bandjoin(mask)
    return black.copy(interpretation="srgb").composite2(white.copy(interpretation="srgb"), "over").cast("uchar")


@dataclass
class PreparedWatermark:
    """A watermark ready to composite: the spec, and the mark as in-memory RGBA with opacity applied."""

    spec: WatermarkSpec
    mark: pyvips.Image
    _scaled: OrderedDict[tuple[int, int], pyvips.Image] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def scaled_for(self, width: int, height: int) -> pyvips.Image:
        """The mark at ``spec.scale`` of a ``width`` x ``height`` photo's width (and never taller than it)."""
        key = (width, height)
        with self._lock:
            hit = self._scaled.get(key)
            if hit is not None:
                self._scaled.move_to_end(key)
                return hit
        target_w = max(1, round(self.spec.scale * width))
        # thumbnail_image premultiplies alpha while resampling, so edges do not darken.
        scaled = self.mark.thumbnail_image(target_w, height=max(1, height), size="both").copy_memory()
        with self._lock:
            self._scaled[key] = scaled
            while len(self._scaled) > _SCALED_CACHE_SIZE:
                self._scaled.popitem(last=False)
        return scaled


def prepare_watermark(spec: WatermarkSpec, logo: bytes | None, limits: ImageLimits) -> PreparedWatermark:
    """Decode the logo (``spec.image``'s bytes) or render ``spec.text``, apply opacity, keep it in memory.

    Called once per worker. The logo goes through the same safe decode as photos (header limits,
    sRGB, 8-bit); its alpha is kept.

    Raises:
        WatermarkConfigError: no logo bytes for an image watermark, or bytes that are no image.
    """
    ensure_vips_safety()
    if spec.text is not None:
        with vips_errors("watermark text"):
            mark = _render_text(spec.text)
    else:
        if not logo:
            raise WatermarkConfigError(f"watermark image {spec.image!r} is empty or missing")
        try:
            _, image = load_image(logo, limits=limits, keep_alpha=True)
            mark = _rgba(image)
        except ImageRejected as exc:
            raise WatermarkConfigError(f"watermark image {spec.image!r}: {exc}") from exc
    with vips_errors("watermark"):
        mark = _with_opacity(_rgba(mark), spec.opacity).copy_memory()
    return PreparedWatermark(spec, mark)


def _place(spec: WatermarkSpec, width: int, height: int, w: int, h: int) -> tuple[int, int]:
    """Top-left corner of a ``w`` x ``h`` mark on the 9-point grid, offsets inward from anchored edges."""
    horizontal = "left" if spec.position.endswith("left") else "right" if spec.position.endswith("right") else "centre"
    vertical = "top" if spec.position.startswith("top") else "bottom" if spec.position.startswith("bottom") else "centre"
    x = {"left": spec.offset_x, "centre": (width - w) // 2 + spec.offset_x, "right": width - w - spec.offset_x}[horizontal]
    y = {"top": spec.offset_y, "centre": (height - h) // 2 + spec.offset_y, "bottom": height - h - spec.offset_y}[vertical]
    # Offsets larger than the photo must not push the mark off it: it stays fully visible.
    return min(max(0, x), max(0, width - w)), min(max(0, y), max(0, height - h))


def _tiled(mark: pyvips.Image, spec: WatermarkSpec, width: int, height: int) -> pyvips.Image:
    """The mark repeated over the whole photo, half a mark apart, starting at the offsets."""
    gap_x, gap_y = max(1, mark.width // 2), max(1, mark.height // 2)
    cell = mark.embed(0, 0, mark.width + gap_x, mark.height + gap_y)  # transparent gap
    ox, oy = spec.offset_x % cell.width, spec.offset_y % cell.height
    across, down = math.ceil((width + ox) / cell.width), math.ceil((height + oy) / cell.height)
    return cell.replicate(across, down).crop(ox, oy, width, height)


def apply_watermark(image: pyvips.Image, prepared: PreparedWatermark) -> pyvips.Image:
    """Composite the prepared mark over an 8-bit sRGB ``image`` (3 or 4 bands); same bands out."""
    spec = prepared.spec
    mark = prepared.scaled_for(image.width, image.height)
    if spec.tile:
        return _over(image, _tiled(mark, spec, image.width, image.height))
    x, y = _place(spec, image.width, image.height, mark.width, mark.height)
    # Blend only the mark's rectangle and insert it back: composite works in float over its
    # whole output, so compositing the full photo would cost several times the blend itself.
    region = image.crop(x, y, mark.width, mark.height)
    return image.insert(_over(region, mark), x, y)


def _over(base: pyvips.Image, overlay: pyvips.Image) -> pyvips.Image:
    """``overlay`` (RGBA, same size) over ``base``, keeping ``base``'s bands and 8-bit format."""
    out = base.composite2(overlay, "over")
    # composite adds an alpha band; an opaque photo stays opaque, so drop it again.
    return out.extract_band(0, n=base.bands).cast("uchar").copy(interpretation="srgb")


def watermark_pixels(source: Source, prepared: PreparedWatermark, limits: ImageLimits) -> Pixels:
    """The pixels of `watermark` before encoding, from bytes (safe decode) or from a parent rendition in memory."""
    spec = prepared.spec
    keep_alpha = spec.format != "jpeg"
    if not isinstance(source, bytes):
        box = max(source.width, source.height) if spec.long_edge is None else spec.long_edge
        image = fit_image(source, box, size="down", background=spec.background_rgb, keep_alpha=keep_alpha)
        what = "parent rendition"
    else:
        header, image = load_image(
            source, limits=limits, long_edge=spec.long_edge, background=spec.background_rgb, keep_alpha=keep_alpha,
        )
        what = f"{header.format.upper()} image"
    with vips_errors(what):
        return Pixels(apply_watermark(image, prepared), what)


def watermark(data: Source, prepared: PreparedWatermark, limits: ImageLimits) -> Rendition:
    """Decode ``data`` safely, composite the prepared watermark, encode as its spec says.

    The photo keeps its size unless ``spec.long_edge`` fits it inside a box first (never
    enlarging). Orientation, sRGB, first frame and metadata stripping as in every stage.
    ``data`` may also be a parent rendition's pixels in memory.

    Raises:
        ImageRejected: for anything that is not a usable image.
    """
    pixels = watermark_pixels(data, prepared, limits)
    return encode(pixels.image, OutputOptions.from_spec(prepared.spec), what=pixels.what)
