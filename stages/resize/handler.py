"""The resize stage: each `resize` rendition of the graph, made from its source."""

from __future__ import annotations

from functools import partial

from pipeline.registry import EventRegistry
from pipeline.renditions import RenditionGraph, ResizeSpec
from stages.imaging import ImageLimits
from stages.rendition_stage import RenditionMaker, RenditionStage, specs_of
from stages.resize.transform import ResizeParams, resize
from storage import ObjectStore

STAGE = "resize"


def resize_makers(graph: RenditionGraph, limits: ImageLimits) -> dict[str, RenditionMaker]:
    """One bound resize transform per `resize` rendition of the graph (several sizes from one config)."""
    return {name: partial(resize, params=ResizeParams.from_spec(spec), limits=limits)
            for name, spec in specs_of(graph, STAGE, ResizeSpec).items()}


class ResizeStage(RenditionStage):
    """Makes every resize rendition: `web` from the original in the built-in graph."""

    def __init__(
        self, registry: EventRegistry, store: ObjectStore, graph: RenditionGraph, limits: ImageLimits, producer: str
    ) -> None:
        super().__init__(STAGE, registry, store, graph, resize_makers(graph, limits), producer)
