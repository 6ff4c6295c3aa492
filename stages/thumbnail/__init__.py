"""The thumbnail stage: renditions in a fixed box (fit inside, cover with a smart crop, or exact)."""

from pipeline.events import default_registry
from pipeline.renditions import load_rendition_graph
from pipeline.settings import Settings
from stages.imaging import ImageLimits, configure_vips
from stages.thumbnail.handler import ThumbnailStage, thumbnail_makers
from stages.thumbnail.transform import thumbnail
from storage import open_store

__all__ = ["ThumbnailStage", "build_stage", "thumbnail", "thumbnail_makers"]


def build_stage(settings: Settings) -> ThumbnailStage:
    """The thumbnail stage wired to the configured store, limits and graph (entry point `darkroom.stages:thumbnail`)."""
    configure_vips(settings.imaging.vips_concurrency)
    graph = load_rendition_graph(settings.pipeline_file)
    return ThumbnailStage(default_registry(), open_store(settings.storage), graph,
                          ImageLimits.from_settings(settings.imaging), settings.producer_name)
