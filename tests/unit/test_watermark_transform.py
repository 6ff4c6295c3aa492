"""Golden checks of the watermark transform: the mark is where the spec says, faded, scaled, and nowhere else."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips

from pipeline.contracts.renditions import WatermarkSpec, parse_rendition_graph
from stages.image_stages import BindContext, bound_renditions
from stages.imaging import ImageLimits
from stages.watermark import (
    PreparedWatermark,
    WatermarkConfigError,
    prepare_watermark,
    read_logo,
    watermark,
)

LIMITS = ImageLimits()
GREY = [128, 128, 128]


def spec(**kw: object) -> WatermarkSpec:
    return WatermarkSpec.model_validate({"stage": "watermark", "image": "logo.png", **kw})


def grey_photo(width: int = 1000, height: int = 600) -> bytes:
    return (pyvips.Image.black(width, height, bands=3) + GREY).cast("uchar").copy(interpretation="srgb").pngsave_buffer()


def red_logo(width: int = 200, height: int = 100, alpha: int = 255) -> bytes:
    """An opaque (or uniformly translucent) red rectangle as PNG with alpha."""
    rgb = (pyvips.Image.black(width, height, bands=3) + [255, 0, 0]).cast("uchar")
    return rgb.bandjoin(alpha).copy(interpretation="srgb").pngsave_buffer()


def decode(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def marked(image: pyvips.Image) -> pyvips.Image:
    """1 where a pixel differs visibly from the grey photo, else 0."""
    diff = (image - GREY).abs()
    return (diff.bandor() > 8).ifthenelse(1, 0)


def bounding_box(image: pyvips.Image) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the visibly changed pixels."""
    mask = marked(image).cast("uchar")
    columns, rows = mask.project()  # per-column and per-row sums, read back in one go
    xs = [x for x, v in enumerate(bytes((columns > 0).cast("uchar").write_to_memory())) if v]
    ys = [y for y, v in enumerate(bytes((rows > 0).cast("uchar").write_to_memory())) if v]
    assert xs and ys, "no watermark anywhere"
    return xs[0], ys[0], xs[-1] - xs[0] + 1, ys[-1] - ys[0] + 1


def run(wm: WatermarkSpec, logo: bytes | None = None, photo: bytes | None = None) -> pyvips.Image:
    prepared = prepare_watermark(wm, red_logo() if logo is None and wm.image else logo, LIMITS)
    out = watermark(photo or grey_photo(), prepared, LIMITS)
    return decode(out.data)


def test_logo_is_present_in_its_region_at_its_opacity_and_absent_elsewhere() -> None:
    # The studio's proof: bottom-right, 40 % opacity, 20 % of the photo's width.
    image = run(spec(position="bottom-right", opacity=0.4, scale=0.2, format="png"))
    assert (image.width, image.height) == (1000, 600)
    left, top, width, height = bounding_box(image)
    assert (left, top, width, height) == (800, 500, 200, 100)
    r, g, b = image.getpoint(900, 550)[:3]
    # 40 % red over grey: 128 + 0.4 * (255 - 128) = 179, 128 * 0.6 = 77.
    assert abs(r - 179) <= 2 and abs(g - 77) <= 2 and abs(b - 77) <= 2
    outside = image.crop(0, 0, 800, 600)
    assert marked(outside).max() == 0  # not one pixel changed elsewhere


@pytest.mark.parametrize(
    ("position", "corner"),
    [
        ("top-left", (20, 10)), ("top", (400, 10)), ("top-right", (780, 10)),
        ("left", (20, 250)), ("centre", (400, 250)), ("right", (780, 250)),
        ("bottom-left", (20, 490)), ("bottom", (400, 490)), ("bottom-right", (780, 490)),
    ],
)
def test_nine_point_grid_with_inward_offsets(position: str, corner: tuple[int, int]) -> None:
    # Offsets move the mark inward from anchored edges; on a centred axis they are ignored at 0.
    offsets = {"offset_x": 0 if position in ("top", "centre", "bottom") else 20,
               "offset_y": 0 if position in ("left", "centre", "right") else 10}
    image = run(spec(position=position, scale=0.2, opacity=1.0, format="png", **offsets))
    assert bounding_box(image) == (*corner, 200, 100)


def test_scale_is_relative_to_the_photo_width() -> None:
    image = run(spec(scale=0.5, opacity=1.0, format="png"), photo=grey_photo(800, 600))
    assert bounding_box(image)[2:] == (400, 200)


def test_a_mark_taller_than_the_photo_is_limited_to_its_height() -> None:
    image = run(spec(scale=1.0, opacity=1.0, format="png"), logo=red_logo(100, 400), photo=grey_photo(400, 100))
    left, top, width, height = bounding_box(image)
    assert height == 100 and width == 25


def test_tiling_covers_the_whole_photo() -> None:
    image = run(spec(tile=True, scale=0.1, opacity=1.0, format="png"))
    mask = marked(image)
    assert 0.3 < mask.avg() < 0.7  # marks and gaps, everywhere
    for x, y in ((0, 0), (0, 550), (950, 0)):
        assert mask.crop(x, y, 50, 50).max() == 1  # no corner is left bare


def test_logo_alpha_is_respected() -> None:
    # A logo with a transparent hole in the middle leaves the photo untouched there.
    rgb = (pyvips.Image.black(200, 100, bands=3) + [255, 0, 0]).cast("uchar")
    alpha = (pyvips.Image.black(200, 100) + 255).draw_rect(0, 50, 25, 100, 50, fill=True).cast("uchar")
    logo = rgb.bandjoin(alpha).copy(interpretation="srgb").pngsave_buffer()
    image = run(spec(position="top-left", opacity=1.0, format="png"), logo=logo)
    assert image.getpoint(100, 50)[:3] == GREY
    assert image.getpoint(10, 10)[:3] == [255, 0, 0]


def test_text_watermark_is_rendered_in_its_region() -> None:
    image = run(WatermarkSpec(stage="watermark", text="© Studio Lumen", position="bottom-left", scale=0.3,
                              opacity=0.8, format="png"))
    left, top, width, height = bounding_box(image)
    assert left <= 3 and top + height >= 597  # the soft shadow fades out at the very edge
    assert 250 <= width <= 300 and height < 100


def test_text_is_drawn_as_written_not_as_markup() -> None:
    prepared = prepare_watermark(WatermarkSpec(stage="watermark", text="Smith & Co <studio>"), None, LIMITS)
    assert prepared.mark.width > 100  # an unescaped "&" or "<" makes Pango fail or drop the text


def test_source_is_fitted_when_long_edge_is_set() -> None:
    image = run(spec(long_edge=500, scale=0.2, opacity=1.0, format="png"))
    assert (image.width, image.height) == (500, 300)
    assert bounding_box(image) == (400, 250, 100, 50)


def test_jpeg_proof_from_a_jpeg_web_rendition() -> None:
    photo = (pyvips.Image.black(2048, 1365, bands=3) + GREY).cast("uchar").jpegsave_buffer(Q=90)
    image = run(spec(opacity=0.4, scale=0.2), photo=photo)
    assert image.get("vips-loader").startswith("jpegload")
    assert image.crop(1700, 1250, 300, 100).extract_band(0).avg() > 160
    assert abs(image.crop(0, 0, 1500, 1000).extract_band(0).avg() - 128) < 2


# --- preparation, once per worker ---------------------------------------------------------------


def test_the_mark_is_prepared_once_and_scaled_copies_are_reused() -> None:
    prepared = prepare_watermark(spec(), red_logo(), LIMITS)
    assert isinstance(prepared, PreparedWatermark)
    first = prepared.scaled_for(1000, 600)
    assert prepared.scaled_for(1000, 600) is first  # same photo size: no new resample
    for n in range(40):  # the cache stays bounded whatever sizes come in
        prepared.scaled_for(500 + n, 400)
    assert len(prepared._scaled) <= 16


def test_logo_from_a_file_relative_to_the_pipeline_folder(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(red_logo())
    graph = parse_rendition_graph("renditions:\n  proof: {stage: watermark, image: logo.png}\n")
    bound = bound_renditions("watermark", graph, BindContext(LIMITS, None, tmp_path))  # type: ignore[arg-type]
    assert bound["proof"].render.keywords["prepared"].mark.width == 200  # type: ignore[attr-defined]


def test_logo_from_the_store() -> None:
    class Store:
        bucket = "darkroom"

        def get(self, key: str) -> bytes:
            assert key == "assets/logo.png"
            return red_logo()

    assert read_logo("s3://assets/logo.png", Store(), Path("/nowhere")) == red_logo()  # type: ignore[arg-type]


def test_a_missing_or_bad_logo_stops_the_worker_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WatermarkConfigError, match="cannot read"):
        read_logo("missing.png", None, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(WatermarkConfigError, match="not a JPEG"):
        prepare_watermark(spec(), b"this is not a logo", LIMITS)
    with pytest.raises(WatermarkConfigError, match="empty or missing"):
        prepare_watermark(spec(), None, LIMITS)
