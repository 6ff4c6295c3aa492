"""Fused stages: several stages run as one worker and one consumer group (`darkroom worker resize,thumbnail`).

A package whose stages can run fused plugs in a `darkroom.fusions` entry point: an object with
`stages` (the names it can fuse) and `build(stages, settings)` (the fused stage). The framework only
names and finds them; what fusing means (for images: derived renditions from the parent's pixels in
memory) belongs to the package. A fused stage's name is its stages sorted and joined by `+`
(`resize+thumbnail+watermark`), and so is its consumer group (`darkroom.resize+thumbnail+watermark`),
whatever order they were asked in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Protocol

from pipeline.settings import Settings
from pipeline.stage import Stage

FUSION_ENTRY_POINTS = "darkroom.fusions"
_SEPARATORS = re.compile(r"[,+]")


class Fusion(Protocol):
    """What a `darkroom.fusions` entry point is."""

    stages: frozenset[str]

    def build(self, stages: Sequence[str], settings: Settings) -> Stage: ...


def fusions() -> list[Fusion]:
    """Installed fusions."""
    return [ep.load() for ep in entry_points(group=FUSION_ENTRY_POINTS)]


def split_stages(name: str) -> list[str]:
    """`resize,thumbnail` or `resize+thumbnail` → ['resize', 'thumbnail']; a plain stage → [it]."""
    return [part.strip() for part in _SEPARATORS.split(name) if part.strip()]


def fused_name(stages: Sequence[str]) -> str:
    """The canonical name of stages run fused: sorted, de-duplicated, joined by `+`; one stage is itself."""
    return "+".join(sorted(set(stages)))


def is_fused(name: str) -> bool:
    """Whether `name` asks for several stages at once."""
    return len(split_stages(name)) > 1


def fusion_for(stages: Sequence[str]) -> Fusion:
    """The installed fusion that runs every one of `stages`; ValueError saying which can fuse otherwise."""
    wanted = set(stages)
    installed = fusions()
    for fusion in installed:
        if wanted <= fusion.stages:
            return fusion
    fusable = "; ".join(", ".join(sorted(f.stages)) for f in installed) or "none installed"
    raise ValueError(f"cannot run {', '.join(sorted(wanted))} fused: stages that fuse together are: {fusable}")


def fusable_stages() -> set[str]:
    """Every stage some installed fusion can fuse."""
    return {stage for fusion in fusions() for stage in fusion.stages}
