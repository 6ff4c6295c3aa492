"""The resize stage: the `web` rendition (long edge 2048, JPEG q85) of every upload."""

from pipeline.events import default_registry
from pipeline.settings import Settings
from stages.imaging import ImageLimits, configure_vips
from stages.resize.handler import ResizeStage
from stages.resize.transform import Rendition, ResizeParams, resize
from storage import open_store

__all__ = ["Rendition", "ResizeParams", "ResizeStage", "build_stage", "resize"]


def build_stage(settings: Settings) -> ResizeStage:
    """The resize stage wired to the configured store and limits (entry point `darkroom.stages:resize`)."""
    configure_vips(settings.imaging.vips_concurrency)
    limits = ImageLimits(
        max_bytes=settings.imaging.max_input_bytes,
        max_pixels=settings.imaging.max_input_pixels,
        max_side=settings.imaging.max_input_side,
    )
    return ResizeStage(default_registry(), open_store(settings.storage), ResizeParams(), limits, settings.producer_name)
