"""The resize transform: original bytes in, web JPEG rendition out. Pure; no Kafka, no storage."""

from __future__ import annotations

from dataclasses import dataclass

from stages.imaging import ImageLimits, encode_jpeg, load_thumbnail


@dataclass(frozen=True)
class ResizeParams:
    """Fit the image inside ``long_edge`` x ``long_edge``; JPEG ``quality`` 1-100."""

    long_edge: int = 2048
    quality: int = 85
    enlarge: bool = False

    def __post_init__(self) -> None:
        if self.long_edge < 1:
            raise ValueError(f"long_edge must be >= 1, got {self.long_edge}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")


@dataclass(frozen=True)
class Rendition:
    """An encoded rendition and what a consumer needs to store and describe it."""

    data: bytes
    width: int
    height: int
    format: str
    content_type: str


def resize(data: bytes, params: ResizeParams, limits: ImageLimits) -> Rendition:
    """Resize an uploaded image so its longest side is ``params.long_edge``, as sRGB JPEG.

    The header is probed first (format allow-list, byte/pixel/side limits) so hostile input
    costs nothing; the decode uses shrink-on-load, applies EXIF orientation, converts to
    8-bit sRGB (CMYK, grey, 16-bit and alpha included; alpha is flattened onto white) and
    reads only the first frame of an animation. Images already smaller than ``long_edge``
    keep their size unless ``params.enlarge``. The output carries no metadata.

    Raises:
        ImageRejected: for anything that is not a usable image; never a raw ``pyvips.Error``.
    """
    header, image = load_thumbnail(
        data,
        params.long_edge,
        height=params.long_edge,
        size="both" if params.enlarge else "down",
        limits=limits,
    )
    encoded = encode_jpeg(image, params.quality, what=f"{header.format.upper()} image")
    return Rendition(
        data=encoded,
        width=image.width,
        height=image.height,
        format="jpeg",
        content_type="image/jpeg",
    )
