"""The resize transform: source bytes in, a rendition fitted inside a long edge out. Pure; no Kafka, no storage."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.renditions import ResizeSpec
from stages.imaging import (
    WHITE,
    ImageLimits,
    OutputFormat,
    OutputOptions,
    Rendition,
    encode,
    load_thumbnail,
)

__all__ = ["Rendition", "ResizeParams", "resize"]


@dataclass(frozen=True)
class ResizeParams:
    """Fit the image inside ``long_edge`` x ``long_edge`` and encode it (quality 1-100)."""

    long_edge: int = 2048
    quality: int = 85
    enlarge: bool = False
    format: OutputFormat = "jpeg"
    progressive: bool = False
    keep_copyright: bool = False
    background: tuple[int, int, int] = WHITE

    def __post_init__(self) -> None:
        if self.long_edge < 1:
            raise ValueError(f"long_edge must be >= 1, got {self.long_edge}")
        OutputOptions(self.format, self.quality, self.progressive, self.keep_copyright, self.background)  # validates

    @property
    def output(self) -> OutputOptions:
        """How the rendition is encoded."""
        return OutputOptions(self.format, self.quality, self.progressive, self.keep_copyright, self.background)

    @classmethod
    def from_spec(cls, spec: ResizeSpec) -> ResizeParams:
        """The parameters a studio declared for a resize rendition."""
        out = OutputOptions.from_spec(spec)
        return cls(long_edge=spec.long_edge, quality=out.quality, enlarge=spec.enlarge, format=out.format,
                   progressive=out.progressive, keep_copyright=out.keep_copyright, background=out.background)


def resize(data: bytes, params: ResizeParams, limits: ImageLimits) -> Rendition:
    """Resize an image so its longest side is ``params.long_edge``, encoded as ``params`` say.

    The header is probed first (format allow-list, byte/pixel/side limits) so hostile input
    costs nothing; the decode uses shrink-on-load, applies EXIF orientation, converts to
    8-bit sRGB (CMYK, grey, 16-bit and ICC profiles included) and reads only the first frame
    of an animation. Alpha is kept for formats that have it and flattened onto
    ``params.background`` for JPEG. Images already smaller than ``long_edge`` keep their size
    unless ``params.enlarge``. The output carries no metadata (but an optional copyright).

    Raises:
        ImageRejected: for anything that is not a usable image; never a raw ``pyvips.Error``.
    """
    header, image = load_thumbnail(
        data,
        params.long_edge,
        height=params.long_edge,
        size="both" if params.enlarge else "down",
        limits=limits,
        background=params.background,
        keep_alpha=params.format != "jpeg",
    )
    return encode(image, params.output, what=f"{header.format.upper()} image")
