"""The watermark stage: each `watermark` rendition of the graph, its mark prepared once per worker."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from pipeline.registry import EventRegistry
from pipeline.renditions import RenditionGraph, WatermarkSpec
from stages.imaging import ImageLimits
from stages.rendition_stage import RenditionMaker, RenditionStage, specs_of
from stages.watermark.transform import (
    PreparedWatermark,
    WatermarkConfigError,
    prepare_watermark,
    watermark,
)
from storage import ObjectStore, StorageError

STAGE = "watermark"
S3_SCHEME = "s3://"


def read_logo(location: str, store: ObjectStore, base_dir: Path) -> bytes:
    """The logo's bytes: ``s3://KEY`` from the configured bucket, else a file (relative to ``base_dir``).

    Raises:
        WatermarkConfigError: the logo cannot be read; the message says where it was looked for.
    """
    if location.startswith(S3_SCHEME):
        key = location[len(S3_SCHEME):]
        try:
            return store.get(key)
        except StorageError as exc:
            raise WatermarkConfigError(f"watermark image {location}: cannot read key {key!r} "
                                       f"in bucket {store.bucket!r}: {exc}") from exc
    path = Path(location).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise WatermarkConfigError(f"watermark image {location}: cannot read {path}: {exc.strerror}") from exc


def prepare_all(
    graph: RenditionGraph, store: ObjectStore, limits: ImageLimits, base_dir: Path
) -> dict[str, PreparedWatermark]:
    """Every watermark of the graph, prepared (logo read and decoded, or text rendered) once."""
    prepared = {}
    for name, spec in specs_of(graph, STAGE, WatermarkSpec).items():
        logo = read_logo(spec.image, store, base_dir) if spec.image is not None else None
        prepared[name] = prepare_watermark(spec, logo, limits)
    return prepared


def watermark_makers(prepared: dict[str, PreparedWatermark], limits: ImageLimits) -> dict[str, RenditionMaker]:
    """One bound watermark transform per prepared rendition."""
    return {name: partial(watermark, prepared=mark, limits=limits) for name, mark in prepared.items()}


class WatermarkStage(RenditionStage):
    """Makes every watermark rendition of the graph."""

    def __init__(
        self,
        registry: EventRegistry,
        store: ObjectStore,
        graph: RenditionGraph,
        limits: ImageLimits,
        producer: str,
        base_dir: Path = Path("."),
    ) -> None:
        makers = watermark_makers(prepare_all(graph, store, limits, base_dir), limits)
        super().__init__(STAGE, registry, store, graph, makers, producer)
