"""The rendition graph: parsed from YAML, refused with the bad field named."""

import pytest

from pipeline.contracts.renditions import (
    PipelineConfigError,
    load_rendition_graph,
    parse_rendition_graph,
)

STUDIO = """
renditions:
  web: {stage: resize, long_edge: 2048}
  thumb: {stage: thumbnail, source: web, width: 400, height: 400, fit: cover, crop: attention, format: webp}
  proof: {stage: watermark, source: web, text: "© studio", position: bottom-right, opacity: 0.4, scale: 0.2}
"""


def test_a_studio_graph_derives_smaller_renditions_from_web() -> None:
    graph = parse_rendition_graph(STUDIO)
    assert graph.names() == {"web", "thumb", "proof"}
    assert graph.made_from("original") == ["web"]
    assert sorted(graph.made_from("web")) == ["proof", "thumb"]
    assert list(graph.for_stage("thumbnail")) == ["thumb"]


def test_the_built_in_graph_is_the_web_rendition() -> None:
    assert load_rendition_graph(None).names() == {"web"}


@pytest.mark.parametrize("text,message", [
    ("renditions:\n  t: {stage: thumbnail, width: 0, height: 4}\n", "renditions.t.width"),
    ("renditions:\n  t: {stage: resize, source: nope}\n", "renditions.t.source: unknown source 'nope'"),
    ("renditions:\n  a: {stage: resize, source: b}\n  b: {stage: resize, source: a}\n", "cycle a → b → a"),
    ("renditions:\n  a: {stage: blur}\n", "renditions.a"),
    ("renditions:\n  a: {stage: watermark}\n", "exactly one of `image` or `text`"),
    ("renditions:\n  a: {stage: resize, colour: red}\n", "renditions.a.colour"),
    ("renditions: {}\n", "at least one rendition"),
    ("renditions: [\n", "not valid YAML"),
])
def test_invalid_graphs_are_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(PipelineConfigError, match=message.replace("(", r"\(")) as info:
        parse_rendition_graph(text, "studio.yaml")
    assert str(info.value).startswith("studio.yaml: ")


def test_an_unreadable_file_says_what_to_do(tmp_path) -> None:
    with pytest.raises(PipelineConfigError, match="DARKROOM_PIPELINE_FILE"):
        load_rendition_graph(tmp_path / "missing.yaml")
