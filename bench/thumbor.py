"""thumbor, what a studio would otherwise deploy, as a baseline on the same corpus and in the same run.

The harness installs thumbor from PyPI into a virtualenv of its own under the data dir (never the
project's: thumbor pins Pillow < 13 and brings OpenCV), writes a config that reads the corpus from
local files (`file_loader`, as the floor reads them; no storage, no result storage, so every request
decodes its original), starts `processes` thumbor servers, and asks each photo's renditions of the
pipeline file as thumbor URLs:

- `web` (resize): `fit-in/2048x2048/filters:no_upscale():quality(85):format(jpeg)`, progressive JPEG;
- `thumb` (thumbnail, cover): `400x400/smart/filters:quality(75):format(webp)` — thumbor's smart
  crop runs its OpenCV face and feature detectors (the `opencv` extra);
- `proof` (watermark): the same fit as its source, plus `watermark(mark.png,-24,-24,60,20)`: the
  pipeline file's text mark rendered once to a PNG, 40 % opaque, 20 % of the width, 24 px from the
  bottom-right corner.

thumbor serves one request at a time per process (its engine runs on the IO loop), so the client
keeps two requests in flight per server. A photo's three renditions are three requests, each decoding
the original: thumbor cannot derive `thumb` from `web`. Start-up and one warm-up photo per server are
not timed, as for the fleet and the floor.

    python -m bench.thumbor --photos 10      # install if needed, then measure on the generated corpus
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

from bench import cpu
from bench.memory import peak_rss_mib
from bench.offline import OfflineResult
from pipeline.contracts.renditions import (
    RenditionGraph,
    ResizeSpec,
    ThumbnailSpec,
    WatermarkSpec,
    load_rendition_graph,
)

THUMBOR_REQUIREMENT = "thumbor[opencv]==7.8.0"  # 7.8 supports Python 3.10-3.13; the opencv extra runs `smart`
_MARKER = ".darkroom-installed"
Echo = Callable[[str], None]


class ThumborError(RuntimeError):
    """thumbor could not be installed, started or asked; the message says what to look at."""


def ensure_thumbor(venv: Path, echo: Echo = print) -> Path:
    """The `thumbor` executable of a virtualenv at `venv`, created and installed from PyPI on first use."""
    exe = venv / "bin" / "thumbor"
    marker = venv / _MARKER
    if exe.exists() and marker.exists() and marker.read_text() == THUMBOR_REQUIREMENT:
        return exe
    echo(f"thumbor: installing {THUMBOR_REQUIREMENT} into {venv} (its own virtualenv, once)")
    # `python -m venv` from the project's venv builds on the base interpreter: nothing of ours is shared.
    steps = [[sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", THUMBOR_REQUIREMENT]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise ThumborError(f"`{' '.join(step)}` failed ({done.returncode}): {done.stderr[-2000:]}; "
                               "is PyPI reachable? `darkroom bench run --no-thumbor` skips this baseline")
    marker.write_text(THUMBOR_REQUIREMENT)
    return exe


def _mark_png(spec: WatermarkSpec, base_dir: Path) -> bytes:
    """The watermark as a PNG at full opacity (thumbor applies the alpha), from the spec's text or logo file."""
    from stages.imaging import ImageLimits
    from stages.watermark.transform import prepare_watermark

    logo = None
    if spec.image is not None:
        path = Path(spec.image)
        logo = (path if path.is_absolute() else base_dir / path).read_bytes()
    prepared = prepare_watermark(spec.model_copy(update={"opacity": 1.0}), logo, ImageLimits())
    return bytes(prepared.mark.pngsave_buffer())


def _box(graph: RenditionGraph, name: str) -> int:
    """The long edge a rendition fits in: its own, else its source's (a proof of `web` is web-sized)."""
    spec = graph.renditions[name]
    edge = getattr(spec, "long_edge", None)
    if edge is not None:
        return int(edge)
    if spec.source == "original":
        return 30_000
    return _box(graph, spec.source)


def _anchor(position: str, offset_x: int, offset_y: int) -> tuple[str, str]:
    x = str(-offset_x) if position.endswith("right") else str(offset_x) if position.endswith("left") else "center"
    y = str(-offset_y) if position.startswith("bottom") else str(offset_y) if position.startswith("top") else "center"
    return x, y


def rendition_paths(graph: RenditionGraph) -> dict[str, str]:
    """Per rendition of the graph, the thumbor URL path before the image (`unsafe/…/`)."""
    out = {}
    for name, spec in graph.renditions.items():
        if spec.format not in ("jpeg", "webp", "png"):
            raise ThumborError(f"rendition {name}: thumbor cannot write {spec.format}")
        filters = [f"quality({spec.quality})", f"format({spec.format})"]
        if isinstance(spec, ResizeSpec):
            box = f"fit-in/{spec.long_edge}x{spec.long_edge}"
            if not spec.enlarge:
                filters.insert(0, "no_upscale()")
        elif isinstance(spec, ThumbnailSpec):
            if spec.fit == "cover":
                box = f"{spec.width}x{spec.height}" + ("/smart" if spec.crop != "centre" else "")
            else:
                box = f"fit-in/{spec.width}x{spec.height}"
        elif isinstance(spec, WatermarkSpec):
            edge = _box(graph, name)
            box = f"fit-in/{edge}x{edge}"
            x, y = _anchor(spec.position, spec.offset_x, spec.offset_y)
            alpha = round((1 - spec.opacity) * 100)  # thumbor's alpha is transparency
            filters = ["no_upscale()", *filters, f"watermark(mark.png,{x},{y},{alpha},{round(spec.scale * 100)})"]
        else:  # pragma: no cover - the graph admits only the three kinds
            raise ThumborError(f"rendition {name}: unknown kind")
        out[name] = f"unsafe/{box}/filters:{':'.join(filters)}"
    return out


def _config(root: Path, processes: int) -> str:
    return "\n".join([
        "LOADER = 'thumbor.loaders.file_loader'",
        f"FILE_LOADER_ROOT_PATH = {str(root)!r}",
        "STORAGE = 'thumbor.storages.no_storage'",  # no cache of originals: every request decodes, as the fleet
        "RESULT_STORAGE = None",
        "ENGINE = 'thumbor.engines.pil'",
        "DETECTORS = ['thumbor.detectors.face_detector', 'thumbor.detectors.feature_detector']",
        "PROGRESSIVE_JPEG = True",
        "RESPECT_ORIENTATION = True",
        "PRESERVE_EXIF_INFO = False",
        "ALLOW_UNSAFE_URL = True",
        "AUTO_WEBP = False",
        "MAX_WIDTH = 0",
        "MAX_HEIGHT = 0",
        "MAX_PIXELS = 200000000",
        "ENABLE_ETAGS = False",
        "MAX_AGE = 0",
        f"ENGINE_THREADPOOL_SIZE = 0  # one request at a time per process ({processes} processes)",
        "",
    ])


class ThumborServers:
    """`processes` thumbor servers on free ports, serving the corpus folder and the mark."""

    def __init__(self, exe: Path, workdir: Path, corpus_dir: Path, mark: bytes, processes: int, host: str) -> None:
        from operations.fleet.supervisor import free_port

        self.host = host
        root = workdir / "root"
        root.mkdir(parents=True, exist_ok=True)
        (root / "mark.png").write_bytes(mark)
        link = root / "photos"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(corpus_dir.resolve(), target_is_directory=True)
        conf = workdir / "thumbor.conf"
        conf.write_text(_config(root, processes))
        self.ports = [free_port(host) for _ in range(processes)]
        self.procs: list[subprocess.Popen[bytes]] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        for i, port in enumerate(self.ports):
            log = (workdir / f"thumbor-{i + 1}.log").open("ab")
            self.procs.append(subprocess.Popen(
                [str(exe), "--ip", host, "--port", str(port), "--conf", str(conf), "--log-level", "warning"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir,
            ))
        self.logs = workdir

    def url(self, index: int, path: str) -> str:
        return f"http://{self.host}:{self.ports[index % len(self.ports)]}/{path}"

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        for i in range(len(self.ports)):
            while True:
                if self.procs[i].poll() is not None:
                    raise ThumborError(f"thumbor {i + 1} exited with {self.procs[i].returncode}; see {self.logs}")
                try:
                    with urllib.request.urlopen(self.url(i, "healthcheck"), timeout=2) as answer:
                        if answer.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise ThumborError(f"thumbor {i + 1} not answering after {timeout_s:.0f}s; see {self.logs}")
                time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        return {f"thumbor#{i + 1}": p.pid for i, p in enumerate(self.procs)}

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _fetch(url: str) -> int:
    with urllib.request.urlopen(url, timeout=300) as answer:
        body = answer.read()
    if not body:
        raise ThumborError(f"empty answer for {url}")
    return len(body)


def run_thumbor(exe: Path, workdir: Path, paths: list[Path], pipeline_file: Path, processes: int,
                host: str = "127.0.0.1") -> OfflineResult:
    """Time thumbor making every rendition of `pipeline_file` for `paths` (one folder) with `processes` servers."""
    if not paths:
        raise ValueError("no photos")
    folder = paths[0].parent
    if any(p.parent != folder for p in paths):
        raise ValueError("thumbor serves one folder: the corpus must be in one")
    graph = load_rendition_graph(pipeline_file)
    marks = [s for s in graph.renditions.values() if isinstance(s, WatermarkSpec)]
    mark = _mark_png(marks[0], pipeline_file.resolve().parent) if marks else b""
    templates = rendition_paths(graph)
    servers = ThumborServers(exe, workdir, folder, mark, processes, host)
    try:
        servers.wait_ready()

        def one_photo(index: int, path: Path) -> int:
            image = "photos/" + quote(path.name)
            return sum(1 for t in templates.values() if _fetch(servers.url(index, f"{t}/{image}")))

        for i in range(processes):  # warm-up: libraries, detectors' cascades, first-request costs
            one_photo(i, paths[i % len(paths)])
        pids = servers.pids()
        before = cpu.snapshot(pids)
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2 * processes) as pool:
            made = sum(pool.map(lambda item: one_photo(*item), enumerate(paths)))
        seconds = time.perf_counter() - began
        used = cpu.used(before, cpu.snapshot(pids))
        peak = max((peak_rss_mib(pid) or 0.0 for pid in pids.values()), default=0.0)
    finally:
        servers.stop()
    return OfflineResult(kind="thumbor", processes=processes, photos=len(paths), seconds=seconds,
                         photos_per_s=len(paths) / seconds, peak_rss_mib=peak, renditions=made,
                         cpu_ms_per_photo=sum(used.values()) * 1000 / len(paths))


def main() -> None:
    """Install (once) and measure thumbor on the generated corpus."""
    import argparse

    from bench.corpus import build

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dir", type=Path, default=Path(".darkroom/bench/thumbor"))
    parser.add_argument("--corpus", type=Path, default=Path(".darkroom/bench/corpus-seed42"))
    args = parser.parse_args()
    exe = ensure_thumbor(args.dir / "venv")
    result = run_thumbor(exe, args.dir, build(args.corpus, args.photos), Path("examples/pipeline.yaml"), args.processes)
    print(f"thumbor {result.photos_per_s:.2f} photos/s ({result.photos} in {result.seconds:.1f}s, {result.processes} "
          f"processes, {result.cpu_ms_per_photo:.0f} ms CPU per photo, peak RSS {result.peak_rss_mib:.0f} MiB)")


if __name__ == "__main__":
    main()
