"""Fused image stages: the whole chain from one read and one decode, indistinguishable from the stages run apart."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips

from pipeline.contracts.events import FILE_PROCESSED, FILE_UPLOADED, H_RENDITION, default_registry
from pipeline.contracts.renditions import load_rendition_graph, parse_rendition_graph
from pipeline.envelope import H_TRACEPARENT, headers_dict
from pipeline.errors import ErrorKind
from pipeline.fusion import fused_name, is_fused, split_stages
from pipeline.publisher import Outgoing
from pipeline.settings import Settings
from pipeline.worker import build_stage, canonical_stage, group_id
from stages.fused_stage import FusedChain, FusedRenditionStage, fused_image_stage
from stages.image_stages import BindContext, bound_renditions
from stages.imaging import ImageRejected
from storage import original_key
from tests.unit.test_rendition_stage import (
    LIMITS,
    STUDIO,
    MemoryStore,
    as_received,
    body,
    photo,
    run,
    stages,
    upload,
)

IMAGE = ("resize", "thumbnail", "watermark")


def fused(store: MemoryStore, text: str = STUDIO, names: tuple[str, ...] = IMAGE) -> FusedRenditionStage:
    return fused_image_stage(names, default_registry(), store, parse_rendition_graph(text), LIMITS, "test")  # type: ignore[arg-type]


def unfused_outputs(data: bytes, text: str = STUDIO) -> list[Outgoing]:
    """What the three stages run apart publish for one upload, Kafka hop by Kafka hop."""
    store = MemoryStore()
    apart = stages(store, text)
    out = [m for stage in apart for m in run(stage, upload(store, data))]
    for message in out:  # grows while walked: every output is delivered to every stage, as over the topic
        out += [m for stage in apart for m in run(stage, as_received(message))]
    return out


def summary(messages: list[Outgoing]) -> dict[str, tuple[object, ...]]:
    """Per rendition: everything a consumer can see, except the time it happened and the trace's span ids."""
    out = {}
    for m in messages:
        env = body(m)
        d = env.data
        out[d["rendition"]] = (m.topic, m.key, env.event_id, env.causation_id, env.correlation_id, env.producer,
                               d["key"], d["width"], d["height"], d["format"], d["sourceEventId"],
                               headers_dict(m.headers)[H_RENDITION])
    return out


def test_names_are_canonical_whatever_the_order() -> None:
    assert split_stages("resize,thumbnail") == ["resize", "thumbnail"] == split_stages("resize+thumbnail")
    assert fused_name(["watermark", "resize", "thumbnail"]) == "resize+thumbnail+watermark"
    assert canonical_stage("watermark,resize,thumbnail") == "resize+thumbnail+watermark"
    assert group_id(canonical_stage("thumbnail,resize")) == "darkroom.resize+thumbnail"
    assert canonical_stage("resize") == "resize" and not is_fused("resize") and is_fused("resize,thumbnail")
    with pytest.raises(ValueError, match="unknown stage nope"):
        canonical_stage("resize,nope")
    with pytest.raises(ValueError, match="stages that fuse together are: resize, thumbnail, watermark"):
        canonical_stage("resize,gallery")  # business stages do not fuse with image stages


def test_one_upload_gives_every_rendition_with_the_ids_and_keys_of_the_unfused_path() -> None:
    store = MemoryStore()
    stage = fused(store)
    data = photo()
    out = run(stage, upload(store, data))
    assert summary(out) == summary(unfused_outputs(data))
    assert [body(m).data["rendition"] for m in out] == ["web", "thumb", "proof"]  # parents first
    # One GET (the original): web is not read back, and every rendition is written once.
    assert store.gets == [original_key("shoot-1", "photo-1", "jpg")]
    assert sorted(k.rsplit("/", 1)[1] for k in store.objects if k.startswith("renditions/")) == [
        "proof.jpg", "thumb.webp", "web.jpg"]
    for m in out:
        stored = pyvips.Image.new_from_buffer(store.objects[body(m).data["key"]], "")
        assert (stored.width, stored.height) == (body(m).data["width"], body(m).data["height"])
    # The trace goes on as over Kafka: thumb's and proof's parent span is web's message.
    web_trace = headers_dict(out[0].headers)[H_TRACEPARENT].decode().split("-")
    for m in out[1:]:
        assert headers_dict(m.headers)[H_TRACEPARENT].decode().split("-")[1] == web_trace[1]  # same trace id


def test_the_original_is_decoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    decodes = []
    real = pyvips.Image.thumbnail_buffer

    def counting(data: bytes, *args: object, **kwargs: object) -> pyvips.Image:
        decodes.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(pyvips.Image, "thumbnail_buffer", staticmethod(counting))
    store = MemoryStore()
    data = photo()
    run(fused(store), upload(store, data))
    assert decodes == [len(data)]  # web from the upload; thumb and proof from web's pixels in memory
    decodes.clear()
    unfused_outputs(data)
    assert len(decodes) == 3  # apart: web's JPEG is decoded again by thumbnail and by watermark


def test_its_own_renditions_are_never_consumed_again() -> None:
    store = MemoryStore()
    stage = fused(store)
    out = run(stage, upload(store, photo()))
    processed = {"eventType": FILE_PROCESSED.encode()}
    assert stage.accepts({"eventType": FILE_UPLOADED.encode()})
    for m in out:
        assert not stage.accepts(headers_dict(m.headers))
        assert stage.process(as_received(m)) == []  # even without the header filter: the body says in-chain
    assert stage.accepts(processed)  # no rendition header (an older producer): the body decides
    assert stage.name == "resize+thumbnail+watermark" and stage.sources == {"original"}


def test_a_partial_fusion_consumes_what_the_stages_outside_it_produce() -> None:
    store = MemoryStore()
    # thumbnail and watermark fused, resize apart: the fused stage consumes web's event, reads web once.
    stage = fused(store, names=("thumbnail", "watermark"))
    assert not stage.accepts({"eventType": FILE_UPLOADED.encode()})
    assert stage.accepts({"eventType": FILE_PROCESSED.encode(), H_RENDITION: b"web"})
    resize, _, _ = stages(store)
    [web] = run(resize, upload(store, photo()))
    out = run(stage, as_received(web))
    expected = summary(unfused_outputs(photo()))
    assert summary(out) == {k: v for k, v in expected.items() if k != "web"}
    assert len(store.gets) == 2  # the original (resize), then web once for both derived renditions


def test_chains_of_the_same_stage_and_every_level_derive_from_memory() -> None:
    text = """
renditions:
  large: {stage: resize, long_edge: 1600}
  web: {stage: resize, source: large, long_edge: 800, format: webp}
  small: {stage: resize, source: web, long_edge: 200}
  thumb: {stage: thumbnail, source: web, width: 100, height: 100}
"""
    store = MemoryStore()
    out = run(fused(store, text, ("resize", "thumbnail")), upload(store, photo()))
    assert summary(out) == summary(unfused_outputs(photo(), text))
    assert [body(m).data["width"] for m in out] == [1600, 800, 200, 100]
    assert len(store.gets) == 1


def test_an_exif_rotated_original_gives_the_same_renditions_fused() -> None:
    image = (pyvips.Image.black(1200, 800, bands=3) + [40, 90, 200]).cast("uchar").copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)  # stored landscape, shown portrait
    data = image.jpegsave_buffer(keep="exif")
    store = MemoryStore()
    out = run(fused(store), upload(store, data))
    sizes = {body(m).data["rendition"]: (body(m).data["width"], body(m).data["height"]) for m in out}
    assert sizes == {"web": (667, 1000), "thumb": (200, 200), "proof": (667, 1000)}  # rotated once, not twice
    assert summary(out) == summary(unfused_outputs(data))


def test_an_inside_fit_from_memory_may_round_the_other_way_by_one_pixel() -> None:
    # Apart, the thumbnail decodes web's JPEG with shrink-on-load, whose rounding differs from resampling
    # the pixels in memory: 667x1000 into 300x100 is 66 px wide apart and 67 fused. Both fit the box.
    text = STUDIO.replace("fit: cover, crop: attention", "fit: inside").replace("width: 200, height: 200",
                                                                                  "width: 300, height: 100")
    image = (pyvips.Image.black(667, 1000, bands=3) + [40, 90, 200]).cast("uchar").jpegsave_buffer()
    store = MemoryStore()
    fused_sizes = {body(m).data["rendition"]: (body(m).data["width"], body(m).data["height"])
                   for m in run(fused(store, text), upload(store, image))}
    apart_sizes = {body(m).data["rendition"]: (body(m).data["width"], body(m).data["height"])
                   for m in unfused_outputs(image, text)}
    assert fused_sizes.keys() == apart_sizes.keys()
    for name, (w, h) in fused_sizes.items():
        assert abs(w - apart_sizes[name][0]) <= 1 and abs(h - apart_sizes[name][1]) <= 1, name


def test_a_corrupt_upload_is_permanent_and_writes_nothing() -> None:
    store = MemoryStore()
    stage = fused(store)
    with pytest.raises(ImageRejected) as info:
        stage.process(upload(store, photo()[:2000]))
    assert stage.classify(info.value) is ErrorKind.PERMANENT
    assert [k for k in store.objects if k.startswith("renditions/")] == []
    # The chain's memory is released with the failure: the next photo starts clean.
    out = run(stage, upload(store, photo()))
    assert len(out) == 3


def test_the_in_process_chain_makes_what_the_fused_worker_makes() -> None:
    graph = load_rendition_graph(Path(__file__).resolve().parents[2] / "examples" / "pipeline.yaml")
    ctx = BindContext(LIMITS, MemoryStore(), Path("."))  # type: ignore[arg-type]
    chain = FusedChain(graph, {s: bound_renditions(s, graph, ctx) for s in IMAGE})
    made = chain.make_all(photo(3000, 2000))
    assert {n: (r.width, r.height, r.format) for n, r in made.items()} == {
        "web": (2048, 1365, "jpeg"), "thumb": (400, 400, "webp"), "proof": (2048, 1365, "jpeg")}


def test_the_worker_builds_the_fused_stage_from_the_pipeline_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import stages.fused_stage

    store = MemoryStore()
    monkeypatch.setattr(stages.fused_stage, "open_store", lambda _settings: store)
    settings = Settings(pipeline_file=Path(__file__).resolve().parents[2] / "examples" / "pipeline.yaml")
    stage = build_stage("watermark,thumbnail,resize", settings)
    assert isinstance(stage, FusedRenditionStage) and stage.name == "resize+thumbnail+watermark"
    out = run(stage, upload(store, photo()))
    assert [body(m).data["rendition"] for m in out] == ["web", "thumb", "proof"]


def test_sibling_renditions_are_made_at_once_on_two_threads_with_the_parent_in_memory() -> None:
    import threading

    class Recording(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.put_by: dict[str, str] = {}

        def put(self, key, data, content_type="", metadata=None):  # type: ignore[no-untyped-def]
            self.put_by[key.rsplit("/", 1)[1]] = threading.current_thread().name
            return super().put(key, data, content_type, metadata)

    store = Recording()
    stage = fused(store)
    out = run(stage, upload(store, photo()))
    assert [body(m).data["rendition"] for m in out] == ["web", "thumb", "proof"]  # stage order, whatever finished first
    assert store.put_by["thumb.webp"] != store.put_by["proof.jpg"]
    assert len(store.gets) == 1  # the child thread read web from the chain's memory too, not from the store
    stage.close()
