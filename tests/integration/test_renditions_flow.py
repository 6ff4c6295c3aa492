"""The rendition graph on the real stack: upload → ingest → resize (web) → thumbnail (thumb) + watermark (proof)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import pyvips

from pipeline.contracts.events import FILE_PROCESSED, H_RENDITION
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES
from pipeline.settings import Settings
from pipeline.watch import Seen
from storage import ObjectStore, rendition_key
from storage.upload import upload_files
from tests.integration.conftest import make_photos
from tests.integration.helpers import (
    dead_letters,
    events_of,
    expected_size,
    group_caught_up,
    uploaded_events,
)

pytestmark = pytest.mark.integration

SIZES = [(2000, 1500), (1500, 2000), (1800, 1800), (1200, 900)]
RENDITIONS = {"web", "thumb", "proof"}
STAGES = ("resize", "thumbnail", "watermark")


def studio_pipeline(logo_key: str) -> str:
    return f"""
renditions:
  web: {{stage: resize, source: original, long_edge: 1600, format: jpeg, quality: 85}}
  thumb: {{stage: thumbnail, source: web, width: 400, height: 400, fit: cover, crop: attention, format: webp}}
  proof: {{stage: watermark, source: web, image: "s3://{logo_key}", position: bottom-right, opacity: 0.4, scale: 0.2}}
"""


def logo_png() -> bytes:
    rgb = (pyvips.Image.black(300, 100, bands=3) + [255, 255, 255]).cast("uchar")
    return rgb.bandjoin(200).copy(interpretation="srgb").pngsave_buffer()


def renditions_seen(seen: list[Seen], ids: set[str]) -> Counter[tuple[str, str]]:
    """(file id, rendition) -> how many file.processed announced it."""
    return Counter((s.key.decode(), s.envelope().data["rendition"]) for s in events_of(seen, FILE_PROCESSED, ids))


def test_twenty_uploads_produce_every_declared_rendition_once(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str, tmp_path: Path
) -> None:
    logo_key = f"assets/{shoot_id}/logo.png"
    store.put(logo_key, logo_png(), content_type="image/png")
    pipeline_file = tmp_path / "pipeline.yaml"
    pipeline_file.write_text(studio_pipeline(logo_key))

    files = watch(FILES)
    start_worker("ingest")
    for stage in STAGES:
        start_worker(stage, DARKROOM_PIPELINE_FILE=str(pipeline_file))
    photos = make_photos(photo_dir / "renditions", 20, seed=31, sizes=SIZES)
    results = upload_files(store, photos, shoot_id)
    assert all(r.ok for r in results)
    ids = {r.file_id for r in results}
    size_of = {r.file_id: SIZES[i % len(SIZES)] for i, r in enumerate(results)}

    wanted = {(f, r) for f in ids for r in RENDITIONS}
    files.until(lambda seen: set(renditions_seen(seen, ids)) >= wanted, 300)
    for stage in STAGES:  # nothing more is coming: now a duplicate would show
        group_caught_up(settings, stage, FILES, timeout_s=120)
    files.poll(1.0)

    counts = renditions_seen(files.seen, ids)
    assert counts == Counter({pair: 1 for pair in wanted}), "exactly one file.processed per rendition per photo"

    uploaded = uploaded_events(files, ids)
    for seen in events_of(files.seen, FILE_PROCESSED, ids):
        envelope = seen.envelope()
        file_id, name, data = seen.key.decode(), envelope.data["rendition"], envelope.data
        assert seen.headers[H_RENDITION] == name.encode()
        web_size = expected_size(*size_of[file_id], long_edge=1600)
        expected = {"web": web_size, "proof": web_size, "thumb": (400, 400)}[name]
        assert (data["width"], data["height"]) == expected, (file_id, name)
        ext = {"web": "jpg", "proof": "jpg", "thumb": "webp"}[name]
        assert data["key"] == rendition_key(shoot_id, file_id, name, ext, uploaded[file_id].envelope().data["version"])
        stored = pyvips.Image.new_from_buffer(store.get(data["key"]), "")
        assert (stored.width, stored.height) == expected
        assert stored.get("vips-loader").startswith("webpload" if name == "thumb" else "jpegload")
        assert data["bytes"] == store.head(data["key"]).size
        # One chain per photo: web from the upload, thumb and proof from web's event.
        assert envelope.correlation_id == uploaded[file_id].envelope().correlation_id
        if name == "web":
            assert envelope.causation_id == uploaded[file_id].envelope().event_id
        else:
            [web] = [s.envelope() for s in events_of(files.seen, FILE_PROCESSED, {file_id})
                     if s.envelope().data["rendition"] == "web"]
            assert envelope.causation_id == web.event_id


def _vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of a process, from /proc (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


def test_a_png_declaring_60000x60000_is_dead_lettered_and_the_worker_stays_small(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str
) -> None:
    from tests.unit.test_hostile_inputs import png_declaring

    files, dlq = watch(FILES), watch(DEAD_LETTER_QUEUE)
    folder = photo_dir / "bomb"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(png_declaring(60_000, 60_000))
    good = make_photos(folder, 1, seed=32, sizes=[(1200, 900)])
    results = upload_files(store, [folder / "bomb.png", *good], shoot_id)
    bomb_id, good_id = results[0].file_id, results[1].file_id

    start_worker("ingest")
    worker = start_worker("resize")
    dlq.until(lambda _: any(d.key and d.key.decode() == bomb_id for d in dead_letters(dlq)), 120)
    files.until(lambda seen: bool(events_of(seen, FILE_PROCESSED, {good_id})), 120)  # the worker went on

    [letter] = [d for d in dead_letters(dlq) if d.key and d.key.decode() == bomb_id]
    assert letter.stage == "resize" and letter.error_kind == "permanent" and letter.attempts == 1
    assert letter.error_class.endswith("ImageRejected")
    assert "60000x60000" in letter.error_message
    # 3.6 gigapixels declared (~10 GB decoded); the worker's peak stays what an idle worker costs.
    assert worker.proc.poll() is None
    peak_kib = _vm_hwm_kib(worker.proc.pid)
    print(f"resize worker peak RSS (VmHWM) after the 60000x60000 PNG and one photo: {peak_kib // 1024} MiB")
    assert peak_kib < 400 * 1024, f"worker peak RSS {peak_kib // 1024} MiB"
