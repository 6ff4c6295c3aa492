"""The watermark stage: a logo (PNG with alpha) or a text over a rendition, placed, faded, scaled or tiled."""

from pathlib import Path

from pipeline.events import default_registry
from pipeline.renditions import load_rendition_graph
from pipeline.settings import Settings
from stages.imaging import ImageLimits, configure_vips
from stages.watermark.handler import WatermarkStage, read_logo
from stages.watermark.transform import (
    PreparedWatermark,
    WatermarkConfigError,
    apply_watermark,
    prepare_watermark,
    watermark,
)
from storage import open_store

__all__ = [
    "PreparedWatermark",
    "WatermarkConfigError",
    "WatermarkStage",
    "apply_watermark",
    "build_stage",
    "prepare_watermark",
    "read_logo",
    "watermark",
]


def build_stage(settings: Settings) -> WatermarkStage:
    """The watermark stage (entry point `darkroom.stages:watermark`); logos are read and prepared here, once.

    A relative logo path is relative to the pipeline file's folder.
    """
    configure_vips(settings.imaging.vips_concurrency)
    graph = load_rendition_graph(settings.pipeline_file)
    base_dir = settings.pipeline_file.parent if settings.pipeline_file else Path.cwd()
    return WatermarkStage(default_registry(), open_store(settings.storage), graph,
                          ImageLimits.from_settings(settings.imaging), settings.producer_name, base_dir)
