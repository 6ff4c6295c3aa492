"""The studio rendition set made with Pillow, as a hand-rolled worker would make it.

Same three renditions as `bench.decode_once.make_sets()['decode-once']` (the compute floor):
`web` (fit 2048, JPEG q85), `thumb` (400x400 cover, WebP q75), `proof` (a 600x200 white logo at
80 % alpha, scaled to 20 % of the width, 40 % opacity, 24 px from the bottom-right corner, JPEG q85).

A careful hand-rolled worker: JPEG `draft` (DCT-domain downscale while decoding, the one big trick
Pillow has), decode once, and derive `thumb` and `proof` from the in-memory `web` image (no
re-decode, which favours Pillow over the graph, whose stages re-read web's JPEG bytes).
Differences that remain: Pillow's cover crop is centred (libvips uses an attention crop), and
Pillow does no colour management (the corpus is untagged sRGB, so it would change nothing).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

WEB_EDGE = 2048
THUMB_BOX = (400, 400)
MARK_SCALE = 0.2
MARK_OPACITY = 0.4
MARK_OFFSET = 24


@dataclass(frozen=True)
class Made:
    """One rendition made: its size and encoded length."""

    name: str
    width: int
    height: int
    format: str
    nbytes: int


def make_logo() -> Image.Image:
    """The same logo as the floor's (bench.decode_once._logo): 600x200 white, alpha 204 (80 %)."""
    return Image.new("RGBA", (600, 200), (255, 255, 255, 204))


def _fit(width: int, height: int, edge: int) -> tuple[int, int]:
    scale = min(1.0, edge / max(width, height))  # never enlarged, as the resize stage
    return max(1, round(width * scale)), max(1, round(height * scale))


def _encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, quality=quality)
    return out.getvalue()


def _proof(web: Image.Image, logo: Image.Image) -> Image.Image:
    mark_w = max(1, round(web.width * MARK_SCALE))
    mark = logo.resize((mark_w, max(1, round(logo.height * mark_w / logo.width))), Image.Resampling.LANCZOS)
    alpha = mark.getchannel("A").point(lambda a: round(a * MARK_OPACITY))
    proof = web.copy()
    proof.paste(mark.convert("RGB"), (web.width - mark.width - MARK_OFFSET, web.height - mark.height - MARK_OFFSET), alpha)
    return proof


def pillow_set(original: bytes, logo: Image.Image) -> list[Made]:
    """web, thumb and proof of one original."""
    image = Image.open(io.BytesIO(original))
    target = _fit(*image.size, WEB_EDGE)
    if image.format == "JPEG":
        # Ask for the output size (not the 2048 box): draft then picks the largest DCT scale
        # (1/2, 1/4, 1/8) that still gives at least that many pixels each way.
        image.draft("RGB", target)
    image = ImageOps.exif_transpose(image).convert("RGB")
    web = image.resize(_fit(*image.size, WEB_EDGE), Image.Resampling.LANCZOS) if image.size != target else image
    thumb = ImageOps.fit(web, THUMB_BOX, Image.Resampling.LANCZOS)
    proof = _proof(web, logo)
    made = []
    for name, img, fmt, quality in (("web", web, "JPEG", 85), ("thumb", thumb, "WEBP", 75), ("proof", proof, "JPEG", 85)):
        made.append(Made(name, img.width, img.height, fmt.lower(), len(_encode(img, fmt, quality))))
    return made
