"""The thumbnail stage: renditions in a fixed box (fit inside, cover with a smart crop, or exact)."""

from stages.thumbnail.transform import thumbnail, thumbnail_pixels

__all__ = ["thumbnail", "thumbnail_pixels"]
