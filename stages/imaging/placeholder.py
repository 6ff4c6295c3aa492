"""BlurHash placeholders: ~30 characters a gallery page paints before the thumbnail arrives.

The algorithm (https://github.com/woltapp/blurhash, MIT) is a handful of cosine components of the
image in linear light, base-83 encoded. Computed here from a libvips-shrunk copy of at most 32 px,
so it costs well under a millisecond of arithmetic; the first component is the average colour.
"""

from __future__ import annotations

import math

import numpy as np
import pyvips

_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
_SAMPLE_SIDE = 32


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[(value // 83 ** (length - i - 1)) % 83] for i in range(length))


def _to_linear(values: np.ndarray) -> np.ndarray:
    v = values / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _to_srgb8(value: float) -> int:
    v = min(1.0, max(0.0, value))
    encoded = v * 12.92 if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055
    return int(encoded * 255 + 0.5)


def blurhash(image: pyvips.Image, x_components: int = 4, y_components: int = 3) -> str:
    """The BlurHash of an 8-bit sRGB ``image`` (alpha ignored); more x components for wide images."""
    if not (1 <= x_components <= 9 and 1 <= y_components <= 9):
        raise ValueError("BlurHash takes 1 to 9 components per axis")
    small = image.thumbnail_image(_SAMPLE_SIDE, height=_SAMPLE_SIDE) if max(image.width, image.height) > _SAMPLE_SIDE else image
    pixels = _to_linear(small.extract_band(0, n=3).numpy().astype(np.float64))
    height, width = pixels.shape[:2]
    xs, ys = np.arange(width), np.arange(height)
    factors = []
    for j in range(y_components):
        for i in range(x_components):
            basis = np.outer(np.cos(math.pi * j * ys / height), np.cos(math.pi * i * xs / width))
            norm = 1.0 if i == j == 0 else 2.0
            factors.append(norm * (basis[:, :, None] * pixels).sum(axis=(0, 1)) / (width * height))
    dc, ac = factors[0], factors[1:]
    out = _base83((x_components - 1) + (y_components - 1) * 9, 1)
    if ac:
        actual = max(float(np.abs(f).max()) for f in ac)
        quantised = max(0, min(82, int(math.floor(actual * 166 - 0.5))))
        maximum = (quantised + 1) / 166
        out += _base83(quantised, 1)
    else:
        maximum = 1.0
        out += _base83(0, 1)
    out += _base83((_to_srgb8(dc[0]) << 16) + (_to_srgb8(dc[1]) << 8) + _to_srgb8(dc[2]), 4)
    for f in ac:
        q = [max(0, min(18, int(math.floor(math.copysign(abs(c / maximum) ** 0.5, c) * 9 + 9.5)))) for c in f]
        out += _base83(q[0] * 19 * 19 + q[1] * 19 + q[2], 2)
    return out
