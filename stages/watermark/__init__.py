"""The watermark stage: a logo (PNG with alpha) or a text over a rendition, placed, faded, scaled or tiled."""

from stages.watermark.logo import read_logo
from stages.watermark.transform import (
    PreparedWatermark,
    WatermarkConfigError,
    apply_watermark,
    prepare_watermark,
    watermark,
    watermark_pixels,
)

__all__ = [
    "PreparedWatermark",
    "WatermarkConfigError",
    "apply_watermark",
    "prepare_watermark",
    "read_logo",
    "watermark",
    "watermark_pixels",
]
