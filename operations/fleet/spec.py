"""Which stages a fleet runs and how many workers each may have."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import get_args

from pipeline.contracts.renditions import RenditionGraph, ResizeSpec, ThumbnailSpec, WatermarkSpec
from pipeline.fusion import fused_name, split_stages

# A stage, or stages run fused joined by `+` (`resize+thumbnail+watermark=2`, see pipeline/fusion.py).
_ITEM = re.compile(r"^(?P<stage>[a-z][a-z0-9_-]*(?:\+[a-z][a-z0-9_-]*)*)=(?P<min>\d+)(?:\.\.(?P<max>\d+))?$")


@dataclass(frozen=True)
class StageSpec:
    """A stage and its worker bounds: `minimum` always run, up to `maximum` while it lags."""

    stage: str
    minimum: int
    maximum: int

    @property
    def scales(self) -> bool:
        return self.maximum > self.minimum


def parse_workers(text: str) -> list[StageSpec]:
    """Parse `resize=2,ingest=1` (fixed counts) or `resize=1..3` (bounds for lag-based scaling).

    Raises ValueError with the offending item.
    """
    specs: dict[str, StageSpec] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"{item!r}: expected STAGE=N or STAGE=MIN..MAX, e.g. resize=1..3")
        low = int(match["min"])
        high = int(match["max"]) if match["max"] is not None else low
        if high < low or high < 1:
            raise ValueError(f"{item!r}: need 0 <= MIN <= MAX and MAX >= 1")
        if match["stage"] in specs:
            raise ValueError(f"{item!r}: stage {match['stage']} given twice")
        specs[match["stage"]] = StageSpec(match["stage"], low, high)
    if not specs:
        raise ValueError("no stage given, e.g. --workers ingest=1,resize=1..3")
    return list(specs.values())


# The stages a pipeline file can give renditions to (the `stage` field of each rendition kind).
IMAGE_STAGES = frozenset(get_args(kind.model_fields["stage"].annotation)[0] for kind in (ResizeSpec, ThumbnailSpec, WatermarkSpec))


def default_workers(installed: Iterable[str], graph: RenditionGraph) -> list[StageSpec]:
    """One worker of every installed stage the pipeline needs: ingest, the image stages that make a
    rendition of `graph`, the business consumers and the reconciler (`darkroom fleet up` without --workers)."""
    return [StageSpec(name, 1, 1) for name in sorted(installed) if name not in IMAGE_STAGES or graph.for_stage(name)]


def fuse_specs(specs: list[StageSpec], fusable: Collection[str]) -> list[StageSpec]:
    """The fleet with its fusable stages run as one fused stage (`resize=2,thumbnail=2,watermark=2` → `resize+thumbnail+watermark=2`).

    The stages of `specs` that `fusable` names (including those already written fused) become one stage
    in the place of the first, with the largest minimum and the largest maximum among them: one fused
    worker does the work a worker of each did, from one read and one decode per photo. Fewer than two
    such stages: `specs` unchanged.
    """
    fusing = [s for s in specs if all(part in fusable for part in split_stages(s.stage))]
    stages = [part for s in fusing for part in split_stages(s.stage)]
    if len(set(stages)) < 2:
        return list(specs)
    merged = StageSpec(fused_name(stages), max(s.minimum for s in fusing), max(s.maximum for s in fusing))
    out: list[StageSpec] = []
    for spec in specs:
        if spec in fusing:
            if merged not in out:
                out.append(merged)
        else:
            out.append(spec)
    return out
