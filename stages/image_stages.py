"""The one table of image stages: each stage's name, the spec it reads and how its transform is bound.

Every image stage is the generic `RenditionStage` (stages/rendition_stage.py) given one bound
transform per rendition the graph declares for it; this table is the only place that says which
transform a stage runs. A new image stage is a folder with a pure `transform.py`, one row here and
its `darkroom.stages` entry point in pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.contracts.events import CaptureFacts, default_registry
from pipeline.contracts.renditions import (
    RenditionGraph,
    ResizeSpec,
    ThumbnailSpec,
    WatermarkSpec,
    load_rendition_graph,
)
from pipeline.registry import EventRegistry
from pipeline.settings import Settings
from stages.imaging import ImageLimits, configure_vips
from stages.imaging.facts import read_capture_facts
from stages.rendition_stage import RenditionMaker, RenditionStage
from stages.resize.transform import resize
from stages.thumbnail.transform import thumbnail
from stages.watermark.logo import read_logo
from stages.watermark.transform import prepare_watermark, watermark
from storage import ObjectStore, open_store


@dataclass(frozen=True)
class BindContext:
    """What binding a transform may need besides its spec: limits, and where a watermark's logo lives."""

    limits: ImageLimits
    store: ObjectStore
    base_dir: Path  # relative logo paths are relative to the pipeline file's folder


def _bind_watermark(spec: WatermarkSpec, ctx: BindContext) -> RenditionMaker:
    # The mark (logo read and decoded, or text rendered) is prepared once per worker, not per photo.
    logo = read_logo(spec.image, ctx.store, ctx.base_dir) if spec.image is not None else None
    return partial(watermark, prepared=prepare_watermark(spec, logo, ctx.limits), limits=ctx.limits)


@dataclass(frozen=True)
class ImageStage:
    """One row of the table: the spec kind a stage's renditions declare, and how one is bound."""

    spec: type[ResizeSpec | ThumbnailSpec | WatermarkSpec]
    bind: Callable[[Any, BindContext], RenditionMaker]


IMAGE_STAGES: dict[str, ImageStage] = {
    "resize": ImageStage(ResizeSpec, lambda spec, ctx: partial(resize, spec=spec, limits=ctx.limits)),
    "thumbnail": ImageStage(ThumbnailSpec, lambda spec, ctx: partial(thumbnail, spec=spec, limits=ctx.limits)),
    "watermark": ImageStage(WatermarkSpec, _bind_watermark),
}


def makers_for(stage: str, graph: RenditionGraph, ctx: BindContext) -> dict[str, RenditionMaker]:
    """One bound transform per rendition `stage` makes in `graph`."""
    row = IMAGE_STAGES[stage]
    makers = {}
    for name, spec in graph.for_stage(stage).items():
        if not isinstance(spec, row.spec):
            raise TypeError(f"rendition {name!r} of stage {stage!r} is a {type(spec).__name__}, not a {row.spec.__name__}")
        makers[name] = row.bind(spec, ctx)
    return makers


def image_stage(
    stage: str, registry: EventRegistry, store: ObjectStore, graph: RenditionGraph, limits: ImageLimits,
    producer: str, base_dir: Path = Path("."),
) -> RenditionStage:
    """The rendition stage `stage` of `graph`, its transforms bound from the table."""
    makers = makers_for(stage, graph, BindContext(limits, store, base_dir))
    return RenditionStage(stage, registry, store, graph, makers, producer,
                          facts=partial(capture_facts, limits=limits, gps=graph.facts.gps))


def capture_facts(data: bytes, original_name: str, *, limits: ImageLimits, gps: bool) -> CaptureFacts:
    """An original's capture facts (header only) as the event model, GPS only if the pipeline opts in."""
    facts = read_capture_facts(data, limits=limits, original_name=original_name, gps=gps)
    return CaptureFacts.model_validate(asdict(facts))


def build_image_stage(stage: str, settings: Settings) -> RenditionStage:
    """`stage` wired to the configured store, limits and pipeline file (what `darkroom worker STAGE` runs)."""
    configure_vips(settings.imaging.vips_concurrency)
    graph = load_rendition_graph(settings.pipeline_file)
    base_dir = settings.pipeline_file.parent if settings.pipeline_file else Path.cwd()
    return image_stage(stage, default_registry(), open_store(settings.storage), graph,
                       ImageLimits.from_settings(settings.imaging), settings.producer_name, base_dir)


# Entry points of `darkroom.stages` (pyproject.toml): one per row of the table.
build_resize = partial(build_image_stage, "resize")
build_thumbnail = partial(build_image_stage, "thumbnail")
build_watermark = partial(build_image_stage, "watermark")
