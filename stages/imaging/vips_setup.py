"""Process-wide libvips settings for a worker that decodes untrusted uploads."""

from __future__ import annotations

import logging
import threading

import pillow_heif
import pyvips

log = logging.getLogger(__name__)

# Loader families we decode. Everything else the libvips build offers is blocked: each loader
# is attack surface, and probe() already refuses other formats, so a loader outside this list
# could only ever be reached by data that fooled the sniffing.
ALLOWED_LOADER_PREFIXES: tuple[str, ...] = ("jpegload", "pngload", "webpload", "tiffload", "heifload", "gifload")

# Blocked by name as well, so the most dangerous families stay blocked even if walking the
# type tree below ever misses one. Names absent from this build are ignored by libvips.
# uhdrload is here on purpose: with it blocked, UltraHDR JPEGs fall back to jpegload, which
# decodes the SDR base image; the gain map would be stripped on save anyway.
DENIED_LOADERS: tuple[str, ...] = (
    "VipsForeignLoadSvg",
    "VipsForeignLoadPdf",
    "VipsForeignLoadMagick",
    "VipsForeignLoadMagick7",
    "VipsForeignLoadMatrix",
    "VipsForeignLoadCsv",
    "VipsForeignLoadFits",
    "VipsForeignLoadOpenexr",
    "VipsForeignLoadOpenslide",
    "VipsForeignLoadVips",
    "VipsForeignLoadRaw",
    "VipsForeignLoadPpm",
    "VipsForeignLoadRad",
    "VipsForeignLoadAnalyze",
    "VipsForeignLoadMat",
    "VipsForeignLoadNifti",
    "VipsForeignLoadJp2k",
    "VipsForeignLoadJxl",
    "VipsForeignLoadUhdr",
)

_lock = threading.Lock()
_safety_applied = False


def _loader_types() -> list[tuple[str, str]]:
    """(gtype name, nickname) of every loader class in this libvips build."""
    found: list[tuple[str, str]] = []

    def visit(gtype: int) -> None:
        found.append((pyvips.type_name(gtype), pyvips.nickname_find(gtype)))
        pyvips.type_map(gtype, visit_child)

    def visit_child(child: int, _a: object, _b: object) -> object:
        visit(child)
        return pyvips.ffi.NULL  # the C callback must return a pointer; NULL means "go on"

    visit(pyvips.type_from_name("VipsForeignLoad"))
    return found[1:]  # drop VipsForeignLoad itself: blocking it would block every loader


def _apply_loader_policy() -> list[str]:
    pyvips.block_untrusted_set(True)
    for name in DENIED_LOADERS:
        pyvips.operation_block_set(name, True)
    blocked = []
    for type_name, nickname in _loader_types():
        if not nickname.startswith(ALLOWED_LOADER_PREFIXES):
            pyvips.operation_block_set(type_name, True)
            blocked.append(nickname)
    return blocked


def ensure_vips_safety() -> None:
    """Apply the settings every decode depends on, once per process; cheap after the first call.

    Blocks untrusted and unwanted loaders and turns the operation cache off. Transforms call
    this themselves so they are safe even when the process never called ``configure_vips``;
    it leaves concurrency, which is the caller's tuning decision, alone.
    """
    global _safety_applied
    if _safety_applied:
        return
    with _lock:
        if _safety_applied:
            return
        blocked = _apply_loader_policy()
        # Every input is decoded once, so cached operations only pin memory (decoded
        # originals included) in a long-running worker, and entries keyed on buffer
        # addresses risk answering for a different upload that reuses the address.
        pyvips.cache_set_max(0)
        pyvips.cache_set_max_mem(0)
        pyvips.cache_set_max_files(0)
        _safety_applied = True
        log.debug("libvips loaders blocked: %s", ", ".join(sorted(blocked)))


def configure_vips(concurrency: int = 1) -> None:
    """Configure libvips for this worker process; idempotent, safe to call again.

    Operation cache off, libvips thread pool size (and libheif's HEIC decode threads) set to
    ``concurrency`` (the worker already runs one image per pool thread, so 1 avoids
    oversubscribing cores), untrusted loaders
    blocked, and every loader outside JPEG/PNG/WebP/TIFF/HEIF/GIF blocked (svg, pdf, magick,
    matrix, csv, fits, openexr, vips, raw, ... whatever this build has).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    # libvips reports routine per-operation messages at INFO through pyvips: dozens per photo.
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    ensure_vips_safety()
    with _lock:
        pyvips.concurrency_set(concurrency)
        # HEIC is decoded by libheif (pillow-heif), whose own pool defaults to 4 threads per image;
        # the same bound keeps a worker's pool of image threads from oversubscribing the cores.
        pillow_heif.options.DECODE_THREADS = concurrency
