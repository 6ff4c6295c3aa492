"""The rendition graph: every rendition a studio declares, which stage makes it and from what source.

Declared in one pipeline file (YAML), validated at load time: unknown stages, unknown sources and
cycles are refused with the offending field named. A rendition whose source is `original` is made
from the upload (`file.uploaded`); any other is made from its source rendition's `file.processed`,
so the original is decoded once and smaller renditions derive from a larger one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import ConfigError

ORIGINAL = "original"
_NAME = r"^[a-z][a-z0-9_-]{0,31}$"

OutputFormat = Literal["jpeg", "webp", "avif", "png"]
Position = Literal[
    "top-left", "top", "top-right", "left", "centre", "right", "bottom-left", "bottom", "bottom-right"
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(default=ORIGINAL, pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    format: OutputFormat = "jpeg"
    quality: int = Field(default=85, ge=1, le=100)
    progressive: bool = False  # JPEG only
    keep_copyright: bool = False  # keep the source's EXIF copyright notice, and no other metadata
    # What alpha is flattened onto for formats without it (JPEG), as #rrggbb.
    background: str = Field(default="#ffffff", pattern=r"^#[0-9a-fA-F]{6}$")

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        """The background as (r, g, b) in 0-255."""
        return (int(self.background[1:3], 16), int(self.background[3:5], 16), int(self.background[5:7], 16))


class ResizeSpec(_Spec):
    """Fit inside long_edge × long_edge; never enlarges unless `enlarge`."""

    stage: Literal["resize"]
    long_edge: int = Field(default=2048, ge=1, le=30_000)
    enlarge: bool = False


class ThumbnailSpec(_Spec):
    """A fixed box: `inside` fits, `cover` fills and crops, `exact` distorts to the box."""

    stage: Literal["thumbnail"]
    width: int = Field(ge=1, le=10_000)
    height: int = Field(ge=1, le=10_000)
    fit: Literal["inside", "cover", "exact"] = "cover"
    crop: Literal["centre", "attention", "entropy"] = "attention"  # which part `cover` keeps
    # No fit enlarges a photo smaller than the box unless asked: `cover`/`exact` then make the
    # largest box of the same aspect inside the photo, `inside` keeps the photo's size.
    enlarge: bool = False


class WatermarkSpec(_Spec):
    """A logo (PNG with alpha) or a text over the source rendition."""

    stage: Literal["watermark"]
    image: str | None = None  # a file path, or `s3://KEY` in the configured bucket
    text: str | None = Field(default=None, max_length=200)
    position: Position = "bottom-right"
    offset_x: int = 0
    offset_y: int = 0
    opacity: float = Field(default=0.4, gt=0, le=1)
    scale: float = Field(default=0.2, gt=0, le=1)  # watermark width relative to the photo's width
    tile: bool = False
    # Fit the photo inside long_edge² first (never enlarging); None keeps the source's size. Only
    # useful with `source: original`: a proof derived from `web` is already web-sized.
    long_edge: int | None = Field(default=None, ge=1, le=30_000)

    @model_validator(mode="after")
    def _one_mark(self) -> WatermarkSpec:
        if (self.image is None) == (self.text is None):
            raise ValueError("a watermark needs exactly one of `image` or `text`")
        return self


RenditionSpec = Annotated[ResizeSpec | ThumbnailSpec | WatermarkSpec, Field(discriminator="stage")]


class FactsSpec(BaseModel):
    """What of the original's capture facts (camera, lens, exposure, time, size) leaves the original.

    GPS is off unless the studio opts in: a photo's position can be a client's home address.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    gps: bool = False


class RenditionGraph(BaseModel):
    """Every declared rendition by name, checked to form a forest rooted at `original`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    renditions: dict[Annotated[str, Field(pattern=_NAME)], RenditionSpec]
    facts: FactsSpec = FactsSpec()

    @model_validator(mode="after")
    def _acyclic(self) -> RenditionGraph:
        if not self.renditions:
            raise ValueError("declare at least one rendition")
        if ORIGINAL in self.renditions:
            raise ValueError(f"`{ORIGINAL}` is the upload itself and cannot be a rendition name")
        for name, spec in self.renditions.items():
            if spec.source != ORIGINAL and spec.source not in self.renditions:
                raise ValueError(f"renditions.{name}.source: unknown source {spec.source!r} "
                                 f"(use `{ORIGINAL}` or one of {sorted(self.renditions)})")
        for name in self.renditions:
            seen = [name]
            current = self.renditions[name].source
            while current != ORIGINAL:
                if current in seen:
                    raise ValueError(f"renditions.{name}.source: cycle {' → '.join([*seen, current])}")
                seen.append(current)
                current = self.renditions[current].source
        return self

    def names(self) -> set[str]:
        """Every rendition name: a photo is complete when all of them exist."""
        return set(self.renditions)

    def for_stage(self, stage: str) -> dict[str, ResizeSpec | ThumbnailSpec | WatermarkSpec]:
        """The renditions a stage makes."""
        return {n: s for n, s in self.renditions.items() if s.stage == stage}

    def sources_of(self, stage: str) -> set[str]:
        """The sources (`original` or rendition names) a stage consumes."""
        return {s.source for s in self.renditions.values() if s.stage == stage}

    def made_from(self, source: str, stage: str | None = None) -> list[str]:
        """Renditions (of `stage`, if given) whose source is `source`."""
        return [n for n, s in self.renditions.items() if s.source == source and (stage is None or s.stage == stage)]


DEFAULT_PIPELINE = """\
renditions:
  web:
    stage: resize
    source: original
    long_edge: 2048
    format: jpeg
    quality: 85
"""


class PipelineConfigError(ConfigError):
    """The pipeline file is unreadable or invalid; the message names the file and the bad field."""


def parse_rendition_graph(text: str, origin: str = "<pipeline>") -> RenditionGraph:
    """Parse and validate a pipeline file's text."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"{origin}: not valid YAML: {exc}") from exc
    try:
        return RenditionGraph.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise PipelineConfigError(f"{origin}: {problems}") from exc


def load_rendition_graph(path: Path | None) -> RenditionGraph:
    """The rendition graph from `path`, or the built-in one (just `web`) when no path is given."""
    if path is None:
        return parse_rendition_graph(DEFAULT_PIPELINE, "built-in pipeline")
    try:
        text = path.read_text()
    except OSError as exc:
        raise PipelineConfigError(f"cannot read pipeline file {path}: {exc.strerror}; "
                                  "set DARKROOM_PIPELINE_FILE to a readable YAML file") from exc
    return parse_rendition_graph(text, str(path))


def _describe(err: Mapping[str, Any]) -> str:
    parts = [str(p) for p in err["loc"]]
    # Drop pydantic's union tag (renditions.NAME.<stage>.field) so the path reads like the YAML.
    if len(parts) >= 3 and parts[0] == "renditions" and parts[2] in ("resize", "thumbnail", "watermark"):
        del parts[2]
    where = ".".join(parts)
    return f"{where}: {err['msg']}" if where else str(err["msg"])
