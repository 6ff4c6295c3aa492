"""The fleet runs the image stages fused by default: which stages merge, with how many workers, under which name."""

from __future__ import annotations

import pytest

from operations.fleet.cli import planned_specs
from operations.fleet.spec import StageSpec, fuse_specs, parse_workers

IMAGE = {"resize", "thumbnail", "watermark"}


def test_the_image_stages_become_one_fused_stage_in_place_of_the_first() -> None:
    specs = parse_workers("ingest=1,resize=2,thumbnail=1,watermark=1..3,gallery=1")
    assert fuse_specs(specs, IMAGE) == [
        StageSpec("ingest", 1, 1), StageSpec("resize+thumbnail+watermark", 2, 3), StageSpec("gallery", 1, 1)]


def test_nothing_to_fuse_leaves_the_fleet_alone() -> None:
    specs = parse_workers("ingest=1,resize=2,gallery=1")
    assert fuse_specs(specs, IMAGE) == specs


def test_a_fused_stage_can_be_written_explicitly_and_names_are_canonical() -> None:
    assert parse_workers("watermark+resize=2") == [StageSpec("watermark+resize", 2, 2)]
    assert planned_specs("ingest=1,watermark+resize=2,thumbnail=1") == [
        StageSpec("ingest", 1, 1), StageSpec("resize+thumbnail+watermark", 2, 2)]
    assert planned_specs("resize=2,thumbnail=2", fuse=False) == [StageSpec("resize", 2, 2), StageSpec("thumbnail", 2, 2)]
    with pytest.raises(ValueError, match="cannot run gallery, resize fused"):
        planned_specs("resize+gallery=1")
    with pytest.raises(ValueError, match="unknown stage nope"):
        planned_specs("nope=1")
