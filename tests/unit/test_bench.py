"""The benchmark's pure parts, without services: statistics, the Pillow set, run summaries, profiles, reports."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bench.e2e import PhotoTiming, summarise
from bench.fleet import fixed_specs
from bench.machine import describe_machine
from bench.offline import OfflineResult
from bench.pillow_set import make_logo, pillow_set
from bench.profile import summarise_collapsed
from bench.report import (
    ConfigResult,
    ConfigSummary,
    Report,
    Round,
    Target,
    to_markdown,
    write_report,
)
from bench.stats import median, percentile, ratio

RENDITIONS = {"web", "thumb", "proof"}


def test_percentile_is_nearest_rank_and_p99_of_few_photos_is_the_slowest() -> None:
    values = [float(v) for v in range(1, 41)]  # 40 photos, 1..40 ms
    assert percentile(values, 50) == 20.0
    assert percentile(values, 95) == 38.0
    assert percentile(values, 99) == 40.0
    assert percentile([], 50) is None
    assert median([None, 3.0, 1.0]) == 2.0 and median([None]) is None
    assert ratio(1.0, 0.0) is None and ratio(3.0, 2.0) == 1.5


def test_fixed_specs_refuse_ranges_because_scaling_would_move_the_figures() -> None:
    assert [s.minimum for s in fixed_specs("ingest=1,resize=2")] == [1, 2]
    with pytest.raises(ValueError, match="resize"):
        fixed_specs("ingest=1,resize=1..2")


def _jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (120, 80, 40)).save(out, "JPEG", quality=90)
    return out.getvalue()


def test_pillow_set_makes_the_same_three_renditions_as_the_floor() -> None:
    made = {m.name: m for m in pillow_set(_jpeg(4200, 2800), make_logo())}
    assert (made["web"].width, made["web"].height, made["web"].format) == (2048, 1365, "jpeg")  # draft, then fit
    assert (made["thumb"].width, made["thumb"].height, made["thumb"].format) == (400, 400, "webp")
    assert (made["proof"].width, made["proof"].height, made["proof"].format) == (2048, 1365, "jpeg")
    small = {m.name: m for m in pillow_set(_jpeg(800, 600), make_logo())}
    assert (small["web"].width, small["web"].height) == (800, 600)  # never enlarged


def _timing(i: int, gallery: float | None, dead: str | None = None) -> PhotoTiming:
    base = 1_000_000.0 + i * 100
    return PhotoTiming(file_id=f"f{i}", put_start=base, put_done=base + 20, uploaded=base + 50,
                       occurred_at=base - 500, renditions={"web": base + 300, "thumb": base + 400, "proof": base + 450},
                       gallery=gallery, dead_letter=dead)


def test_run_summary_counts_from_first_put_to_last_gallery_update() -> None:
    photos = [_timing(0, 1_000_600.0), _timing(1, 1_000_900.0), _timing(2, None, dead="corrupt")]
    run = summarise("resize=1", "max", None, "s", photos, RENDITIONS)
    assert (run.photos, run.completed, run.dead_lettered) == (3, 2, 1)
    assert run.seconds == pytest.approx(0.9)  # 1_000_000 (first PUT start) → 1_000_900 (last gallery)
    assert run.photos_per_s == pytest.approx(2 / 0.9)
    assert run.latency_ms.p50 == pytest.approx(580.0) and run.latency_ms.max == pytest.approx(780.0)
    assert run.legs_ms == {"ingest": 30.0, "web": 250.0, "thumb+proof": 150.0, "gallery": 250.0}


def test_profile_summary_separates_waiting_threads_from_work(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text(
        "process 1:main;thread 2;_bootstrap (threading.py:1);run (threading.py:2);resize (/x/stages/resize/transform.py:9);"
        "call (/v/site-packages/pyvips/voperation.py:3) 60\n"
        "thread 3;_bootstrap (threading.py:1);_worker (concurrent/futures/thread.py:81) 30\n"
        "thread 4;_commit (/x/pipeline/runner.py:5) 20\n"
    )
    result = summarise_collapsed(raw, pid=7, seconds=1.0)
    assert (result.samples, result.waiting_samples) == (80, 30)
    assert result.top_self[0] == ("call (pyvips/voperation.py)", pytest.approx(0.75))
    assert all("threading.py" not in name for name, _ in result.top_total)


def test_report_writes_json_markdown_and_chart_that_read_back(tmp_path: Path) -> None:
    run = summarise("resize=1", "max", None, "s", [_timing(0, 1_000_600.0)], RENDITIONS)
    ref = OfflineResult(kind="floor", processes=2, photos=1, seconds=0.5, photos_per_s=2.0, peak_rss_mib=100.0, renditions=3)
    summary = ConfigSummary(photos_per_s=run.photos_per_s, floor_photos_per_s=2.0, pillow_photos_per_s=1.0,
                            over_floor=0.5, over_pillow=1.0, floor_over_pillow=2.0, p50_ms=1.0, p95_ms=2.0, p99_ms=3.0,
                            legs_ms={}, fixed=[], peak_rss_mib={})
    report = Report(command="darkroom bench run", machine=describe_machine(), settings={}, corpus={"photos": 1},
                    configs=[ConfigResult(workers="resize=1", main=True, backlog_at_start=0,
                                          rounds=[Round(index=1, e2e=run, floor=ref)], memory=[], summary=summary)],
                    events=None, profile=None, targets=[Target(name="t", goal="≥ 1", value=0.5, met=False)],
                    wall_seconds=1.0)
    paths = write_report(report, tmp_path)
    assert Report.model_validate_json(paths["json"].read_text()) == report
    assert "| t | ≥ 1 | 0.50 | **no** |" in to_markdown(report)
    if "chart" in paths:  # matplotlib is a test dependency; without it the report says so by omission
        assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_thumbor_is_asked_for_the_pipeline_files_three_renditions() -> None:
    from bench.thumbor import rendition_paths
    from pipeline.contracts.renditions import load_rendition_graph

    paths = rendition_paths(load_rendition_graph(Path(__file__).resolve().parents[2] / "examples" / "pipeline.yaml"))
    assert paths == {
        "web": "unsafe/fit-in/2048x2048/filters:no_upscale():quality(85):format(jpeg)",
        "thumb": "unsafe/400x400/smart/filters:quality(75):format(webp)",  # cover + attention crop = thumbor's smart
        # web-sized, 24 px from the bottom-right corner, 40 % opaque (thumbor's alpha is transparency), 20 % wide
        "proof": "unsafe/fit-in/2048x2048/filters:no_upscale():quality(82):format(jpeg):watermark(mark.png,-24,-24,60,20)",
    }


def test_the_floor_is_the_fused_chain_of_the_pipeline_file() -> None:
    from bench.offline import floor_chain

    make = floor_chain(Path(__file__).resolve().parents[2] / "examples" / "pipeline.yaml")
    assert make(_jpeg(3000, 2000)) == 3  # web, thumb and proof, as the fleet makes them


def test_report_shows_thumbor_and_how_cost_grows(tmp_path: Path) -> None:
    from bench.report import ScalePoint

    run = summarise("resize=1", "max", None, "s", [_timing(0, 1_000_600.0)], RENDITIONS)
    run.cpu_s = {"fused#1": 0.4, "kafka (stack)": 0.1}
    thumbor = OfflineResult(kind="thumbor", processes=2, photos=1, seconds=2.0, photos_per_s=0.5, peak_rss_mib=900.0,
                            renditions=3, cpu_ms_per_photo=1400.0)
    round_ = Round(index=1, e2e=run, thumbor=thumbor)
    assert round_.over_thumbor == pytest.approx(run.photos_per_s / 0.5)
    assert round_.cpu_ms_per_photo == pytest.approx(500.0)
    summary = ConfigSummary(photos_per_s=run.photos_per_s, floor_photos_per_s=None, pillow_photos_per_s=None,
                            over_floor=None, over_pillow=None, floor_over_pillow=None, p50_ms=1.0, p95_ms=2.0,
                            p99_ms=3.0, legs_ms={}, fixed=[], peak_rss_mib={}, thumbor_photos_per_s=0.5,
                            over_thumbor=round_.over_thumbor)
    points = [ScalePoint(series=series, megapixels=mp, workers_per_core=wpc, photos=10, e2e_photos_per_s=4.0 / i,
                         e2e_cpu_ms_per_photo=400.0 * i, floor_photos_per_s=6.0 / i, floor_cpu_ms_per_photo=300.0 * i)
              for i, (series, mp, wpc) in enumerate([("photo size", 12, 1), ("photo size", 48, 1),
                                                     ("workers per core", 24, 0.5), ("workers per core", 24, 2)], 1)]
    report = Report(command="darkroom bench run", machine=describe_machine(), settings={}, corpus={"photos": 1},
                    configs=[ConfigResult(workers="resize=1", main=True, fused=True, image_workers=1, backlog_at_start=0,
                                          rounds=[round_], memory=[], summary=summary)],
                    events=None, profile=None, targets=[], wall_seconds=1.0, scaling=points)
    markdown = to_markdown(report)
    assert "## How cost grows" in markdown and "| photo size | 48 | 1 | 10 | 2.00 | 800 |" in markdown
    assert "| thumbor (its processes, same photos) | 1400 |" in markdown
    paths = write_report(report, tmp_path)
    assert Report.model_validate_json(paths["json"].read_text()) == report
    if "chart" in paths:
        assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
