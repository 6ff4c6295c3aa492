"""The thumbnail stage: each `thumbnail` rendition of the graph, made from its source."""

from __future__ import annotations

from functools import partial

from pipeline.registry import EventRegistry
from pipeline.renditions import RenditionGraph, ThumbnailSpec
from stages.imaging import ImageLimits
from stages.rendition_stage import RenditionMaker, RenditionStage, specs_of
from stages.thumbnail.transform import thumbnail
from storage import ObjectStore

STAGE = "thumbnail"


def thumbnail_makers(graph: RenditionGraph, limits: ImageLimits) -> dict[str, RenditionMaker]:
    """One bound thumbnail transform per `thumbnail` rendition of the graph."""
    return {name: partial(thumbnail, spec=spec, limits=limits)
            for name, spec in specs_of(graph, STAGE, ThumbnailSpec).items()}


class ThumbnailStage(RenditionStage):
    """Makes every thumbnail rendition of the graph."""

    def __init__(
        self, registry: EventRegistry, store: ObjectStore, graph: RenditionGraph, limits: ImageLimits, producer: str
    ) -> None:
        super().__init__(STAGE, registry, store, graph, thumbnail_makers(graph, limits), producer)
