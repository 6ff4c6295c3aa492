"""The generic rendition stage with real transforms and an in-memory store: the graph walked event by event."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import pyvips

from pipeline.contracts.events import (
    FILE_PROCESSED,
    FILE_UPLOADED,
    H_RENDITION,
    FileUploaded,
    default_registry,
)
from pipeline.contracts.renditions import load_rendition_graph, parse_rendition_graph
from pipeline.contracts.topics import FILES
from pipeline.envelope import (
    Envelope,
    build_envelope,
    deterministic_id,
    envelope_headers,
    headers_dict,
)
from pipeline.errors import ErrorKind, PermanentError
from pipeline.publisher import Outgoing
from pipeline.settings import Settings
from pipeline.stage import Received
from stages.image_stages import image_stage
from stages.imaging import ImageLimits, ImageRejected
from stages.rendition_stage import RenditionStage
from storage import (
    ObjectInfo,
    ObjectNotFound,
    StorageUnavailable,
    original_key,
    rendition_key,
)

LIMITS = ImageLimits()
SHOOT, FILE = "shoot-1", "photo-1"
STUDIO = """
renditions:
  web: {stage: resize, source: original, long_edge: 1000, format: jpeg, quality: 85}
  thumb: {stage: thumbnail, source: web, width: 200, height: 200, fit: cover, crop: attention, format: webp}
  proof: {stage: watermark, source: web, text: "PROOF", position: bottom-right, opacity: 0.4, scale: 0.2}
"""


class MemoryStore:
    """The ObjectStore port in a dict, counting reads."""

    bucket = "darkroom"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.gets: list[str] = []
        self.down = False

    def get(self, key: str) -> bytes:
        if self.down:
            raise StorageUnavailable("connection refused (fake)")
        self.gets.append(key)
        try:
            return self.objects[key]
        except KeyError:
            raise ObjectNotFound(key) from None

    def put(self, key: str, data: bytes, content_type: str = "", metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        self.objects[key] = data
        return ObjectInfo(key, len(data), "etag", datetime.now(UTC))

    def head(self, key: str) -> ObjectInfo:  # pragma: no cover - not used by stages
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        return key in self.objects

    def list(self, prefix: str) -> Iterator[ObjectInfo]:  # pragma: no cover
        raise NotImplementedError


def photo(width: int = 2000, height: int = 1500) -> bytes:
    return (pyvips.Image.black(width, height, bands=3) + [90, 120, 150]).cast("uchar").jpegsave_buffer()


def as_received(message: Outgoing, offset: int = 0) -> Received:
    return Received(message.topic, 0, offset, message.key, message.value, message.headers, 0)


def upload(store: MemoryStore, data: bytes) -> Received:
    key = original_key(SHOOT, FILE, "jpg")
    store.objects[key] = data
    payload = FileUploaded(file_id=FILE, shoot_id=SHOOT, bucket=store.bucket, key=key, size=len(data), etag="e")
    envelope = build_envelope(FILE_UPLOADED, "1.0.0", payload, subject=FILE, producer="test", event_id="upload-1")
    return as_received(Outgoing.event(FILES, FILE, envelope))


def stages(store: MemoryStore, text: str = STUDIO) -> tuple[RenditionStage, RenditionStage, RenditionStage]:
    graph = parse_rendition_graph(text)
    registry = default_registry()
    return (
        image_stage("resize", registry, store, graph, LIMITS, "test"),  # type: ignore[arg-type]
        image_stage("thumbnail", registry, store, graph, LIMITS, "test"),  # type: ignore[arg-type]
        image_stage("watermark", registry, store, graph, LIMITS, "test"),  # type: ignore[arg-type]
    )


def run(stage: RenditionStage, message: Received) -> list[Outgoing]:
    """What the runner does: filter on headers, then process."""
    return stage.process(message) if stage.accepts(headers_dict(message.headers)) else []


def body(message: Outgoing) -> Envelope:
    return Envelope.from_bytes(message.value or b"")


# --- the built-in graph: today's behaviour is kept ----------------------------------------------


def test_built_in_graph_makes_web_from_the_upload_with_the_same_ids_as_before() -> None:
    store = MemoryStore()
    stage = image_stage("resize", default_registry(), store, load_rendition_graph(None), LIMITS, "test")  # type: ignore[arg-type]
    uploaded = upload(store, photo(4000, 3000))
    [out] = run(stage, uploaded)
    envelope = body(out)
    assert envelope.event_type == FILE_PROCESSED and out.key == FILE.encode()
    assert envelope.event_id == deterministic_id("upload-1", "resize", "web")
    assert envelope.causation_id == "upload-1" and envelope.correlation_id == "upload-1"
    assert envelope.data["key"] == rendition_key(SHOOT, FILE, "web", "jpg")
    assert (envelope.data["width"], envelope.data["height"], envelope.data["format"]) == (2048, 1536, "jpeg")
    assert headers_dict(out.headers)[H_RENDITION] == b"web"
    assert envelope.data["bytes"] == len(store.objects[envelope.data["key"]])


# --- the studio graph, event by event -----------------------------------------------------------


def test_the_graph_is_walked_decoding_the_original_once() -> None:
    store = MemoryStore()
    resize, thumb, proof = stages(store)
    uploaded = upload(store, photo())

    assert run(thumb, uploaded) == [] and run(proof, uploaded) == []  # neither reads originals
    [web] = run(resize, uploaded)
    assert store.gets == [original_key(SHOOT, FILE, "jpg")]

    web_message = as_received(web, 1)
    assert run(resize, web_message) == []  # resize does not derive from web
    [t] = run(thumb, web_message)
    [p] = run(proof, web_message)
    web_key = rendition_key(SHOOT, FILE, "web", "jpg")
    assert store.gets == [original_key(SHOOT, FILE, "jpg"), web_key, web_key]  # the original read once

    by_name = {body(m).data["rendition"]: body(m) for m in (web, t, p)}
    assert by_name["thumb"].data["key"] == rendition_key(SHOOT, FILE, "thumb", "webp")
    assert (by_name["thumb"].data["width"], by_name["thumb"].data["height"]) == (200, 200)
    assert (by_name["proof"].data["width"], by_name["proof"].data["height"]) == (1000, 750)
    assert by_name["web"].data["width"] == 1000
    for name in ("thumb", "proof"):
        # Caused by web's event, same correlation as the upload: one chain per photo.
        assert by_name[name].causation_id == by_name["web"].event_id
        assert by_name[name].correlation_id == "upload-1"
        assert by_name[name].data["sourceEventId"] == by_name["web"].event_id
    for envelope in by_name.values():
        stored = pyvips.Image.new_from_buffer(store.objects[envelope.data["key"]], "")
        assert (stored.width, stored.height) == (envelope.data["width"], envelope.data["height"])
    # Their own events are not inputs of anything: the stages skip them from the headers alone.
    for stage in (resize, thumb, proof):
        assert run(stage, as_received(t)) == [] and run(stage, as_received(p)) == []


def test_one_stage_makes_every_rendition_of_a_source_from_one_read() -> None:
    store = MemoryStore()
    resize, _, _ = stages(store, """
renditions:
  large: {stage: resize, long_edge: 1600}
  web: {stage: resize, long_edge: 800, format: webp}
  small: {stage: resize, source: web, long_edge: 200}
""")
    uploaded = upload(store, photo())
    out = run(resize, uploaded)
    assert [body(m).data["rendition"] for m in out] == ["large", "web"]
    assert [body(m).data["width"] for m in out] == [1600, 800]
    assert len(store.gets) == 1
    [small] = run(resize, as_received(out[1]))
    assert body(small).data["width"] == 200 and body(small).causation_id == body(out[1]).event_id


def test_a_redelivery_writes_the_same_keys_and_publishes_the_same_ids() -> None:
    store = MemoryStore()
    resize, _, _ = stages(store)
    uploaded = upload(store, photo())
    first, again = run(resize, uploaded), run(resize, uploaded)
    assert [body(m).event_id for m in first] == [body(m).event_id for m in again]
    assert [body(m).data["key"] for m in first] == [body(m).data["key"] for m in again]


def test_header_filter_and_body_check() -> None:
    store = MemoryStore()
    _, thumb, _ = stages(store)
    processed = {"eventType": FILE_PROCESSED.encode()}
    assert thumb.accepts({**processed, H_RENDITION: b"web"})
    assert not thumb.accepts({**processed, H_RENDITION: b"thumb"})
    assert not thumb.accepts({"eventType": FILE_UPLOADED.encode()})
    assert not thumb.accepts({"eventType": b"shoot.created"})
    assert thumb.accepts({})  # no type: decoding dead-letters it with a reason
    assert thumb.accepts(processed)  # no rendition header (older producer): the body decides

    # An event without the header for a rendition the stage does not derive from is skipped after parsing.
    resize, _, _ = stages(store)
    [web] = run(resize, upload(store, photo()))
    envelope = body(web)
    other = build_envelope(FILE_PROCESSED, "1.0.0", _with(envelope, rendition="proof"), subject=FILE, producer="t",
                           event_id="x", cause=envelope)
    message = Received(FILES, 0, 5, FILE.encode(), other.to_bytes(), envelope_headers(other), 0)
    assert thumb.process(message) == []


def _with(envelope: Envelope, **changes: object):  # type: ignore[no-untyped-def]
    from pipeline.contracts.events import FileProcessed

    return FileProcessed.model_validate({**envelope.data, **changes})


# --- failures -----------------------------------------------------------------------------------


def test_bad_photo_is_permanent_and_leaves_no_rendition_behind() -> None:
    store = MemoryStore()
    resize, _, _ = stages(store, """
renditions:
  web: {stage: resize, long_edge: 800}
  big: {stage: resize, long_edge: 1600}
""")
    uploaded = upload(store, photo()[:2000])
    with pytest.raises(ImageRejected) as info:
        resize.process(uploaded)
    assert resize.classify(info.value) is ErrorKind.PERMANENT
    assert [k for k in store.objects if k.startswith("renditions/")] == []


def test_storage_outage_is_transient_and_a_vanished_source_is_permanent() -> None:
    store = MemoryStore()
    resize, _, _ = stages(store)
    uploaded = upload(store, photo())
    store.down = True
    with pytest.raises(StorageUnavailable) as outage:
        resize.process(uploaded)
    assert resize.classify(outage.value) is ErrorKind.TRANSIENT
    store.down = False
    store.objects.clear()
    with pytest.raises(PermanentError, match="no longer exists"):
        resize.process(uploaded)


def test_transforms_must_match_the_graph() -> None:
    graph = parse_rendition_graph(STUDIO)
    with pytest.raises(ValueError, match="declares"):
        RenditionStage("thumbnail", default_registry(), MemoryStore(), graph, {}, "test")  # type: ignore[arg-type]


def test_a_stage_without_renditions_in_the_graph_skips_everything() -> None:
    store = MemoryStore()
    _, thumb, proof = stages(store, "renditions:\n  web: {stage: resize}\n")
    assert thumb.sources == {} and proof.sources == {}
    assert not thumb.accepts({"eventType": FILE_UPLOADED.encode()})
    assert not proof.accepts({"eventType": FILE_PROCESSED.encode(), H_RENDITION: b"web"})


# --- wiring -------------------------------------------------------------------------------------


def test_stages_are_installed_as_entry_points() -> None:
    names = {ep.name for ep in entry_points(group="darkroom.stages")}
    assert {"resize", "thumbnail", "watermark"} <= names


def test_build_stage_reads_the_pipeline_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stages.image_stages

    store = MemoryStore()
    pvips_logo = (pyvips.Image.black(40, 20, bands=3) + 255).cast("uchar").bandjoin(128).pngsave_buffer()
    store.objects["assets/logo.png"] = pvips_logo
    (tmp_path / "pipeline.yaml").write_text(STUDIO.replace('text: "PROOF"', "image: s3://assets/logo.png"))
    monkeypatch.setattr(stages.image_stages, "open_store", lambda _settings: store)
    settings = Settings(pipeline_file=tmp_path / "pipeline.yaml")
    thumb = stages.image_stages.build_thumbnail(settings)
    proof = stages.image_stages.build_watermark(settings)
    assert thumb.name == "thumbnail" and thumb.sources == {"web": ["thumb"]}
    assert proof.name == "watermark" and proof.sources == {"web": ["proof"]}
    assert store.gets == ["assets/logo.png"]  # the logo is read once, when the worker starts


def test_the_example_pipeline_file_is_valid() -> None:
    graph = load_rendition_graph(Path(__file__).resolve().parents[2] / "examples" / "pipeline.yaml")
    assert graph.names() == {"web", "thumb", "proof"}
    assert graph.made_from("original") == ["web"] and sorted(graph.made_from("web")) == ["proof", "thumb"]


@pytest.mark.parametrize("text,field", [
    ("renditions:\n  web: {stage: resize, background: white}\n", "renditions.web.background"),
    ("renditions:\n  p: {stage: watermark, text: x, long_edge: 0}\n", "renditions.p.long_edge"),
    ("renditions:\n  t: {stage: thumbnail, width: 4, height: 4, enlarge: maybe}\n", "renditions.t.enlarge"),
])
def test_new_fields_are_validated_naming_the_field(text: str, field: str) -> None:
    from pipeline.contracts.renditions import PipelineConfigError

    with pytest.raises(PipelineConfigError, match=field):
        parse_rendition_graph(text, "studio.yaml")
