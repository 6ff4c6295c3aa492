"""The benchmark harness, small: three photos through the real (fused) fleet, the floor and Pillow (not
thumbor: installing it is not cheap; tests/unit/test_bench.py checks its URLs), one "how cost grows"
point, the event comparison, and a report that reads back. Proves the harness runs, not how fast anything is: no
timing thresholds, only structure and figures that must agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness import Bench, BenchConfig
from bench.report import Report, write_report
from operations.devstack import DevStack
from pipeline.settings import Settings
from tests.integration.conftest import REPO, make_photos

pytestmark = pytest.mark.integration

WORKERS = "ingest=1,resize=1,thumbnail=1,watermark=1,gallery=1"


def test_bench_run_small_writes_a_consistent_report(stack: DevStack, settings: Settings, tmp_path: Path) -> None:
    make_photos(tmp_path / "corpus", 3, seed=57, sizes=[(1600, 1200), (1200, 1600)])
    config = BenchConfig(photos=3, runs=1, workers=(WORKERS,), rate_fractions=(0.5,), corpus_dir=tmp_path / "corpus",
                         processes=1, events=200, event_runs=1, pipeline_file=REPO / "examples" / "pipeline.yaml",
                         out_dir=tmp_path / "out", timeout_s=180, command="pytest smoke", thumbor=False,
                         sizes=(12,), size_photos=1)
    bench = Bench(settings, config, echo=lambda _msg: None)
    report = bench.run()
    paths = write_report(report, bench.out_dir)

    [result] = report.configs
    assert result.workers == WORKERS and result.main and result.fused and result.image_workers == 1
    [round_] = result.rounds
    runs = [round_.e2e, *(fx.run for fx in round_.fixed)]
    assert [r.mode for r in runs] == ["max", "fixed"]
    assert round_.fixed[0].run.target_rate == pytest.approx(0.5 * round_.e2e.photos_per_s)
    for run in runs:
        assert (run.photos, run.completed, run.dead_lettered) == (3, 3, 0)
        assert run.photos_per_s > 0 and run.photos_per_s == pytest.approx(run.completed / run.seconds)
        lat = run.latency_ms
        assert lat.p50 is not None and 0 < lat.p50 <= lat.p95 <= lat.p99 <= lat.max  # type: ignore[operator]
        for photo in run.photo_timings:
            assert set(photo.renditions) == {"web", "thumb", "proof"}
            # Causal order of the broker timestamps: thumb and proof come from web, the gallery after all three.
            assert photo.renditions["web"] <= min(photo.renditions["thumb"], photo.renditions["proof"])
            assert photo.gallery is not None and photo.gallery >= max(photo.renditions.values())
            assert photo.put_start <= photo.put_done
    for ref in (round_.floor, round_.pillow):
        assert ref is not None and ref.photos == 3 and ref.renditions == 9 and ref.photos_per_s > 0
    assert round_.thumbor is None and result.summary.over_thumbor is None
    assert round_.over_floor == pytest.approx(round_.e2e.photos_per_s / round_.floor.photos_per_s)  # type: ignore[union-attr]

    # One peak RSS per worker, read from /proc while they ran; the image stages ran as one fused worker.
    fused = "resize+thumbnail+watermark"
    assert sorted(w.stage for w in result.memory) == ["gallery", "ingest", fused]
    assert all(w.peak_rss_mib > 10 for w in result.memory)
    assert result.summary.peak_rss_mib[fused] == max(w.peak_rss_mib for w in result.memory if w.stage == fused)

    [size_point] = report.scaling  # one configuration: no workers-per-core series, one photo size
    assert (size_point.series, size_point.megapixels, size_point.photos) == ("photo size", 12, 1)
    assert size_point.e2e_photos_per_s and size_point.floor_photos_per_s and size_point.e2e_cpu_ms_per_photo

    assert report.events is not None and report.events.events == 200
    [ev] = report.events.runs
    assert ev["ratio"] == pytest.approx(ev["framework_eps"] / ev["raw_eps"])
    assert [t.goal for t in report.targets] == ["≥ 0.85", "≥ 4", "≥ 0.5", "≤ 500", "≤ 300"]
    for word in ("compute floor", "thumbor", "raw loop", "RSS"):
        assert any(word in t.name for t in report.targets), word
    assert report.settings["worker threads (DARKROOM_WORKER__THREADS)"] == settings.worker.threads
    assert report.machine.cores >= 1 and report.corpus["photos"] == 3

    assert Report.model_validate_json(paths["json"].read_text()) == report
    markdown = paths["markdown"].read_text()
    for section in ("## Targets", "## Throughput", "## Latency", "## Peak RSS", "## Event throughput", "## How cost grows",
                    "pytest smoke"):
        assert section in markdown
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
