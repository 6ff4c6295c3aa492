"""The one table of image stages: each stage's name, the spec it reads and how its transform is bound.

Every image stage is the generic `RenditionStage` (stages/rendition_stage.py) given one bound
transform per rendition the graph declares for it; this table is the only place that says which
transform a stage runs. A row binds the whole transform (source bytes, or a parent's pixels in memory
for a fused worker, see stages/fused_stage.py) and its pixels step alone (what a fused chain keeps in
memory when other renditions derive from this one). A new image stage is a folder with a pure `transform.py`, one row here and
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
from stages.imaging import ImageLimits, OutputOptions, Pixels, Rendition, Source, configure_vips
from stages.imaging.facts import read_capture_facts
from stages.rendition_stage import RenditionMaker, RenditionStage
from stages.resize.transform import resize, resize_pixels
from stages.thumbnail.transform import thumbnail, thumbnail_pixels
from stages.watermark.logo import read_logo
from stages.watermark.transform import prepare_watermark, watermark, watermark_pixels
from storage import ObjectStore, open_store


@dataclass(frozen=True)
class BindContext:
    """What binding a transform may need besides its spec: limits, and where a watermark's logo lives."""

    limits: ImageLimits
    store: ObjectStore
    base_dir: Path  # relative logo paths are relative to the pipeline file's folder


# A transform with its spec bound: source bytes, or a parent rendition's pixels, in; encoded rendition out.
Transform = Callable[[Source], Rendition]
# Its pixels step alone, before encoding: what a fused chain keeps in memory for derived renditions.
Renderer = Callable[[Source], Pixels]


@dataclass(frozen=True)
class BoundRendition:
    """One rendition of the graph with its transform bound: the whole transform, and its pixels step alone."""

    make: Transform
    render: Renderer
    output: OutputOptions


def _bind(transform: Callable[..., Rendition], pixels: Callable[..., Pixels]) -> Callable[[Any, BindContext], BoundRendition]:
    def bind(spec: Any, ctx: BindContext) -> BoundRendition:
        return BoundRendition(partial(transform, spec=spec, limits=ctx.limits), partial(pixels, spec=spec, limits=ctx.limits),
                              OutputOptions.from_spec(spec))

    return bind


def _bind_watermark(spec: WatermarkSpec, ctx: BindContext) -> BoundRendition:
    # The mark (logo read and decoded, or text rendered) is prepared once per worker, not per photo.
    logo = read_logo(spec.image, ctx.store, ctx.base_dir) if spec.image is not None else None
    prepared = prepare_watermark(spec, logo, ctx.limits)
    return BoundRendition(partial(watermark, prepared=prepared, limits=ctx.limits),
                          partial(watermark_pixels, prepared=prepared, limits=ctx.limits), OutputOptions.from_spec(spec))


@dataclass(frozen=True)
class ImageStage:
    """One row of the table: the spec kind a stage's renditions declare, and how one is bound."""

    spec: type[ResizeSpec | ThumbnailSpec | WatermarkSpec]
    bind: Callable[[Any, BindContext], BoundRendition]


IMAGE_STAGES: dict[str, ImageStage] = {
    "resize": ImageStage(ResizeSpec, _bind(resize, resize_pixels)),
    "thumbnail": ImageStage(ThumbnailSpec, _bind(thumbnail, thumbnail_pixels)),
    "watermark": ImageStage(WatermarkSpec, _bind_watermark),
}


def bound_renditions(stage: str, graph: RenditionGraph, ctx: BindContext) -> dict[str, BoundRendition]:
    """One bound transform per rendition `stage` makes in `graph`."""
    row = IMAGE_STAGES[stage]
    bound = {}
    for name, spec in graph.for_stage(stage).items():
        if not isinstance(spec, row.spec):
            raise TypeError(f"rendition {name!r} of stage {stage!r} is a {type(spec).__name__}, not a {row.spec.__name__}")
        bound[name] = row.bind(spec, ctx)
    return bound


def makers_for(stage: str, graph: RenditionGraph, ctx: BindContext) -> dict[str, RenditionMaker]:
    """One bound transform per rendition `stage` makes in `graph`: source bytes in, encoded rendition out."""
    return {name: b.make for name, b in bound_renditions(stage, graph, ctx).items()}


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
