"""The resize stage: renditions fitted inside a long edge (the built-in graph's `web`: 2048, JPEG q85)."""

from pipeline.events import default_registry
from pipeline.renditions import load_rendition_graph
from pipeline.settings import Settings
from stages.imaging import ImageLimits, Rendition, configure_vips
from stages.resize.handler import ResizeStage, resize_makers
from stages.resize.transform import ResizeParams, resize
from storage import open_store

__all__ = ["Rendition", "ResizeParams", "ResizeStage", "build_stage", "resize", "resize_makers"]


def build_stage(settings: Settings) -> ResizeStage:
    """The resize stage wired to the configured store, limits and graph (entry point `darkroom.stages:resize`)."""
    configure_vips(settings.imaging.vips_concurrency)
    graph = load_rendition_graph(settings.pipeline_file)
    return ResizeStage(default_registry(), open_store(settings.storage), graph,
                       ImageLimits.from_settings(settings.imaging), settings.producer_name)
