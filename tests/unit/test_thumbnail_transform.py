"""Golden checks of the thumbnail transform and the shared encoder: sizes, crops, formats, colour, metadata."""

from __future__ import annotations

import pytest
import pyvips

from pipeline.contracts.renditions import ThumbnailSpec
from stages.imaging import ImageLimits, OutputOptions, encode, read_copyright
from stages.thumbnail import thumbnail

LIMITS = ImageLimits()
METADATA_PREFIXES = ("exif", "xmp", "icc", "iptc", "orientation", "gps", "png-comment", "gif-comment")


def spec(**kw: object) -> ThumbnailSpec:
    return ThumbnailSpec.model_validate({"stage": "thumbnail", "width": 400, "height": 400, **kw})


def solid(width: int, height: int, colour: list[int] | None = None) -> pyvips.Image:
    return (pyvips.Image.black(width, height, bands=3) + (colour or [90, 120, 150])).cast("uchar").copy(
        interpretation="srgb"
    )


def decode(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def with_metadata(image: pyvips.Image) -> pyvips.Image:
    """A copy carrying what a phone writes: GPS position, camera make, copyright, XMP."""
    tagged = image.copy()
    tagged.set_type(pyvips.GValue.gstr_type, "exif-ifd3-GPSLatitudeRef", "N")
    tagged.set_type(pyvips.GValue.gstr_type, "exif-ifd3-GPSLatitude", "48/1 51/1 24/1")
    tagged.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Make", "Acme")
    tagged.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Copyright", "(c) Jane Doe 2026")
    tagged.set_type(pyvips.GValue.blob_type, "xmp-data", b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')
    return tagged


# --- geometry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fit", "source", "expected"),
    [
        ("inside", (1600, 1200), (400, 300)),
        ("inside", (1200, 1600), (300, 400)),
        ("inside", (200, 100), (200, 100)),  # never enlarged unless asked
        ("cover", (1600, 1200), (400, 400)),
        ("cover", (200, 100), (100, 100)),  # never enlarged: the largest square inside the photo
        ("cover", (1, 1), (1, 1)),  # issue 12: a 1x1 photo does not become a 400x400 thumbnail
        ("exact", (300, 100), (100, 100)),
        ("exact", (1600, 1200), (400, 400)),
    ],
)
def test_fit_modes_make_the_declared_box(fit: str, source: tuple[int, int], expected: tuple[int, int]) -> None:
    out = thumbnail(solid(*source).jpegsave_buffer(), spec(fit=fit), LIMITS)
    assert (out.width, out.height) == expected
    assert (decode(out.data).width, decode(out.data).height) == expected


def test_inside_enlarges_when_asked() -> None:
    out = thumbnail(solid(200, 100).jpegsave_buffer(), spec(fit="inside", enlarge=True), LIMITS)
    assert (out.width, out.height) == (400, 200)


@pytest.mark.parametrize("fit", ["cover", "exact"])
def test_a_small_photo_fills_the_box_only_when_enlarge_is_asked(fit: str) -> None:
    tiny = solid(1, 1).jpegsave_buffer()
    assert (thumbnail(tiny, spec(fit=fit), LIMITS).width, thumbnail(tiny, spec(fit=fit), LIMITS).height) == (1, 1)
    out = thumbnail(tiny, spec(fit=fit, enlarge=True), LIMITS)
    assert (out.width, out.height) == (400, 400)


def test_a_small_photo_on_its_side_keeps_the_box_aspect_upright() -> None:
    # 300x100 stored, EXIF orientation 6: upright it is 100x300, so a 400x200 cover box becomes 100x50.
    turned = solid(300, 100).copy()
    turned.set_type(pyvips.GValue.gint_type, "orientation", 6)
    out = thumbnail(turned.jpegsave_buffer(), spec(fit="cover", width=400, height=200), LIMITS)
    assert (out.width, out.height) == (100, 50)


def test_exact_distorts_to_a_non_square_box() -> None:
    out = thumbnail(solid(1000, 1000).jpegsave_buffer(), spec(fit="exact", width=300, height=100), LIMITS)
    assert (out.width, out.height) == (300, 100)


def _grey_with_red_blob_on_the_right() -> bytes:
    """1200x400: flat grey, a saturated red disc near the right edge (what attention looks for)."""
    base = solid(1200, 400, [128, 128, 128])
    disc = pyvips.Image.black(160, 160).draw_circle(255, 80, 80, 70, fill=True)
    red = solid(160, 160, [230, 20, 20])
    patch = disc.ifthenelse(red, base.crop(1000, 120, 160, 160))
    return base.insert(patch, 1000, 120).jpegsave_buffer(Q=95)


def test_attention_crop_keeps_the_subject_and_centre_crop_does_not() -> None:
    data = _grey_with_red_blob_on_the_right()
    attention = decode(thumbnail(data, spec(fit="cover", crop="attention"), LIMITS).data)
    centre = decode(thumbnail(data, spec(fit="cover", crop="centre"), LIMITS).data)
    red_in = lambda im: (im[0] - im[1]).max()  # noqa: E731 - strongest red-over-green anywhere
    assert red_in(attention) > 150
    assert red_in(centre) < 30


def test_entropy_crop_makes_the_box() -> None:
    out = thumbnail(_grey_with_red_blob_on_the_right(), spec(fit="cover", crop="entropy"), LIMITS)
    assert (out.width, out.height) == (400, 400)


def test_exif_orientation_is_applied() -> None:
    # Stored 400x300 with red left / blue right; orientation 6 displays it 300x400, red on top.
    stored = solid(200, 300, [255, 0, 0]).join(solid(200, 300, [0, 0, 255]), "horizontal").copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", 6)
    out = decode(thumbnail(stored.jpegsave_buffer(Q=95), spec(fit="inside", width=150, height=200), LIMITS).data)
    assert (out.width, out.height) == (150, 200)
    top, bottom = out.getpoint(75, 20), out.getpoint(75, 180)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


# --- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "magic", "loader"),
    [("jpeg", b"\xff\xd8\xff", "jpegload"), ("webp", b"RIFF", "webpload"), ("avif", b"ftyp", "heifload"),
     ("png", b"\x89PNG", "pngload")],
)
def test_every_output_format_decodes(fmt: str, magic: bytes, loader: str) -> None:
    out = thumbnail(solid(800, 600).jpegsave_buffer(), spec(format=fmt), LIMITS)
    assert magic in out.data[:12]
    image = decode(out.data)
    assert image.get("vips-loader").startswith(loader)
    assert (image.width, image.height) == (400, 400)
    assert out.content_type == f"image/{fmt}" and out.ext == {"jpeg": "jpg"}.get(fmt, fmt)
    r, g, b = image.getpoint(200, 200)[:3]
    assert abs(r - 90) < 8 and abs(g - 120) < 8 and abs(b - 150) < 8


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
def test_quality_applies_per_format(fmt: str) -> None:
    noise = pyvips.Image.gaussnoise(400, 400, mean=128, sigma=40).cast("uchar")
    data = noise.bandjoin([noise.rot90(), noise.flip("horizontal")]).copy(interpretation="srgb").pngsave_buffer()
    low = thumbnail(data, spec(format=fmt, quality=20), LIMITS)
    high = thumbnail(data, spec(format=fmt, quality=90), LIMITS)
    assert len(low.data) < len(high.data)


def test_progressive_jpeg_output_is_optional() -> None:
    data = solid(800, 600).jpegsave_buffer()
    assert decode(thumbnail(data, spec(), LIMITS).data).get("jpeg-multiscan") == 0
    assert decode(thumbnail(data, spec(progressive=True), LIMITS).data).get("jpeg-multiscan") == 1


def _half_transparent_png16() -> bytes:
    colour = (pyvips.Image.black(600, 400, bands=3) + [0, 0, 65535]).cast("ushort")
    alpha = (pyvips.Image.black(300, 400)).join(pyvips.Image.black(300, 400) + 65535, "horizontal").cast("ushort")
    return colour.bandjoin(alpha).copy(interpretation="rgb16").pngsave_buffer(bitdepth=16)


def test_alpha_is_kept_for_formats_that_have_it() -> None:
    for fmt in ("png", "webp"):
        image = decode(thumbnail(_half_transparent_png16(), spec(format=fmt, fit="exact"), LIMITS).data)
        assert image.bands == 4 and image.format == "uchar"
        assert image.getpoint(50, 200)[3] == 0 and image.getpoint(350, 200)[3] == 255


def test_alpha_is_flattened_onto_the_configured_background_for_jpeg() -> None:
    image = decode(thumbnail(_half_transparent_png16(), spec(fit="exact", background="#102030"), LIMITS).data)
    assert image.bands == 3
    r, g, b = image.getpoint(50, 200)
    assert abs(r - 0x10) < 6 and abs(g - 0x20) < 6 and abs(b - 0x30) < 6
    assert image.getpoint(350, 200)[2] > 200


# --- colour and metadata ------------------------------------------------------------------------


def test_wide_gamut_input_is_converted_to_srgb() -> None:
    reference = [200, 50, 30]  # an sRGB colour; the same colour in Display P3 has other numbers
    p3 = solid(800, 600, reference).icc_transform("p3", input_profile="srgb", embedded=False)
    data = p3.jpegsave_buffer(Q=95)
    stored = decode(data)
    assert stored.get_typeof("icc-profile-data") != 0
    assert abs(stored.getpoint(10, 10)[0] - reference[0]) > 10  # naive stripping would be visibly off

    image = decode(thumbnail(data, spec(format="webp"), LIMITS).data)
    mean = [image.extract_band(i).avg() for i in range(3)]
    assert all(abs(m - r) <= 4 for m, r in zip(mean, reference, strict=True)), mean
    assert image.get_typeof("icc-profile-data") == 0  # converted, then dropped


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif", "png"])
def test_no_exif_gps_xmp_or_icc_in_any_output(fmt: str) -> None:
    data = with_metadata(solid(800, 600)).jpegsave_buffer(profile="srgb")
    assert "exif-ifd3-GPSLatitude" in decode(data).get_fields()  # the input really has a position
    image = decode(thumbnail(data, spec(format=fmt), LIMITS).data)
    leaked = [f for f in image.get_fields() if f.lower().startswith(METADATA_PREFIXES)]
    assert leaked == []


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
def test_keep_copyright_keeps_only_the_notice(fmt: str) -> None:
    data = with_metadata(solid(800, 600)).jpegsave_buffer(profile="srgb")
    image = decode(thumbnail(data, spec(format=fmt, keep_copyright=True), LIMITS).data)
    assert read_copyright(image) == "(c) Jane Doe 2026"
    fields = image.get_fields()
    assert not [f for f in fields if "GPS" in f or f in ("exif-ifd0-Make", "xmp-data", "icc-profile-data")]


def test_encode_drops_animation_fields_so_webp_is_one_frame() -> None:
    frames = solid(64, 96).copy()
    frames.set_type(pyvips.GValue.gint_type, "page-height", 48)
    out = decode(encode(frames, OutputOptions(format="webp")).data)
    assert out.get_typeof("n-pages") == 0 or out.get("n-pages") == 1


def test_output_options_are_validated() -> None:
    with pytest.raises(ValueError):
        OutputOptions(quality=0)
    with pytest.raises(ValueError):
        OutputOptions(background=(0, 0, 256))


def test_only_tagged_or_cmyk_inputs_pay_for_an_icc_transform() -> None:
    from stages.imaging.safe_load import _needs_colour_management as needs

    def _needs_colour_management(data: bytes) -> bool:
        return needs(pyvips.Image.new_from_buffer(data, "", access="sequential"))

    plain = solid(64, 64)
    assert not _needs_colour_management(plain.jpegsave_buffer())  # untagged RGB is sRGB already
    assert not _needs_colour_management(plain.pngsave_buffer())
    assert _needs_colour_management(plain.jpegsave_buffer(profile="srgb", keep="icc"))
    assert _needs_colour_management(plain.icc_transform("p3", input_profile="srgb").jpegsave_buffer())
    cmyk = (pyvips.Image.black(64, 64, bands=4) + [0, 255, 255, 0]).cast("uchar").copy(interpretation="cmyk")
    assert _needs_colour_management(cmyk.jpegsave_buffer())
