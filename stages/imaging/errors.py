"""The one error a transform raises for bad input, and the translation of libvips errors into it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pyvips

# libvips error text can be long and multi-line (one line per nested call); DLQ records and
# logs want one bounded line.
_MAX_DETAIL_CHARS = 300

# Substrings of libvips messages that mean "no (allowed) loader for this data" rather than
# "a loader tried and the data was bad": blocked loaders are skipped during detection, so a
# blocked format surfaces as "not in a known format".
_UNSUPPORTED_MARKERS = ("not in a known format", "is blocked", "no decoding plugin", "unsupported")


class ImageRejected(Exception):
    """Permanent: this input will never make a rendition.

    ``reason`` is a short stable slug for metrics and the dead-letter queue ("empty",
    "unsupported-format", "too-many-pixels", "too-large-side", "too-many-bytes", "corrupt",
    "no-raw-image" for a camera RAW with neither a preview nor decodable sensor data);
    ``str(exc)`` is a readable sentence telling what is wrong.
    """

    reason: str

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[str, str]]:
        # Work may run in process pools; the default pickling passes only args=(message,)
        # back to __init__, which would fail with our two-argument signature.
        return (type(self), (self.reason, self.message))

    def __repr__(self) -> str:
        return f"ImageRejected(reason={self.reason!r}, message={self.message!r})"


def _one_line(text: str) -> str:
    detail = " ".join(part.strip() for part in text.splitlines() if part.strip())
    if len(detail) > _MAX_DETAIL_CHARS:
        detail = detail[: _MAX_DETAIL_CHARS - 1] + "…"
    return detail


def rejection_from_vips(error: pyvips.Error, what: str = "image") -> ImageRejected:
    """Classify a libvips error as an ``ImageRejected`` with a readable message."""
    raw = f"{error.message or ''} {error.detail or ''}"
    # detail is libvips' own error buffer; message is pyvips' "unable to call <op>" wrapper,
    # which only helps when libvips said nothing.
    detail = _one_line(error.detail or "") or _one_line(error.message or "") or "no detail from libvips"
    if any(marker in raw.lower() for marker in _UNSUPPORTED_MARKERS):
        return ImageRejected(
            "unsupported-format", f"The {what} is in a format this service does not decode ({detail})."
        )
    return ImageRejected("corrupt", f"The {what} is corrupt or truncated and could not be decoded ({detail}).")


@contextmanager
def vips_errors(what: str = "image") -> Iterator[None]:
    """Turn any ``pyvips.Error`` raised inside the block into ``ImageRejected``.

    libvips evaluates lazily, so decode errors surface at save time, not at load time:
    the whole load → process → save chain must run inside this block.
    """
    try:
        yield
    except pyvips.Error as error:
        raise rejection_from_vips(error, what) from error
