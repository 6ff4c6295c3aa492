"""The resize stage: renditions fitted inside a long edge (the built-in graph's `web`: 2048, JPEG q85)."""

from stages.resize.transform import resize, resize_pixels

__all__ = ["resize", "resize_pixels"]
