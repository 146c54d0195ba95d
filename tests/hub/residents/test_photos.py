"""Photos: re-encoded upright without any metadata; non-images, truncated files, bombs and
oversized files refused."""

import io

import pytest
from PIL import Image

from hub.residents.requests.errors import RequestError
from hub.residents.requests.photos import MAX_SIDE, clean_photo

pytestmark = pytest.mark.unit

LIMIT = 5 * 1024 * 1024


def jpeg_with_gps(size: tuple[int, int] = (40, 20), orientation: int = 6) -> bytes:
    img = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation  # rotate 90° to display
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (30.0, 15.0, 12.5)  # latitude
    gps[3], gps[4] = "E", (120.0, 10.0, 3.0)
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif)
    return out.getvalue()


def test_exif_and_gps_are_gone_and_the_photo_is_upright() -> None:
    raw = jpeg_with_gps()
    assert Image.open(io.BytesIO(raw)).getexif().get_ifd(0x8825)  # the test photo does carry a position
    photo = clean_photo(raw, LIMIT)
    img = Image.open(io.BytesIO(photo.data))
    assert img.format == "JPEG" and (photo.width, photo.height) == img.size == (20, 40)  # turned by its orientation
    assert len(img.getexif()) == 0 and "exif" not in img.info and b"PhoneMaker" not in photo.data


def test_png_and_webp_are_taken_and_large_photos_scaled_down() -> None:
    for fmt in ("PNG", "WEBP"):
        out = io.BytesIO()
        Image.new("RGBA", (3200, 1000), (0, 0, 0, 0)).save(out, fmt)
        photo = clean_photo(out.getvalue(), LIMIT)
        assert (photo.width, photo.height) == (MAX_SIDE, 500) and photo.mime == "image/jpeg"


@pytest.mark.parametrize("raw", [
    b"<script>alert(1)</script>", b"%PDF-1.4 not an image", b"GIF89a" + b"\0" * 100, b"",
    jpeg_with_gps()[:200],  # truncated
])
def test_what_is_not_a_whole_jpeg_png_or_webp_is_refused(raw: bytes) -> None:
    with pytest.raises(RequestError) as refused:
        clean_photo(raw, LIMIT)
    assert refused.value.status == 422


def test_a_gif_is_refused_even_though_pillow_reads_it() -> None:
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, "GIF")
    with pytest.raises(RequestError, match="JPEG, PNG or WEBP"):
        clean_photo(out.getvalue(), LIMIT)


def test_oversized_and_bomb_photos_are_refused() -> None:
    with pytest.raises(RequestError) as big:
        clean_photo(b"\xff" * (LIMIT + 1), LIMIT)
    assert big.value.status == 413
    out = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(out, "PNG")  # 144 Mpx in a few kB
    assert len(out.getvalue()) < LIMIT
    with pytest.raises(RequestError, match="too many pixels"):
        clean_photo(out.getvalue(), LIMIT)
