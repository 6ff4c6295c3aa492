"""Input limits, checked from the header before any pixel is decoded."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import ImagingSettings


@dataclass(frozen=True)
class ImageLimits:
    """What an input may cost at most: encoded bytes, decoded pixels, longest side."""

    max_bytes: int = 100 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_side: int = 30_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"ImageLimits.{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_settings(cls, imaging: ImagingSettings) -> ImageLimits:
        """The limits configured by ``DARKROOM_IMAGING__*``."""
        return cls(max_bytes=imaging.max_input_bytes, max_pixels=imaging.max_input_pixels,
                   max_side=imaging.max_input_side)
