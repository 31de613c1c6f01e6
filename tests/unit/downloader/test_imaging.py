"""Validation and normalisation of downloaded bytes (in-process, no servers)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from fixtureweb import encoding
from services.downloader.harvest.imaging import ImagePolicy, normalise, sniff

pytestmark = pytest.mark.unit

POLICY = ImagePolicy(max_side=64, quality=85, min_width=0, min_height=0, max_pixels=10_000_000)


def picture(size: tuple[int, int] = (120, 80), mode: str = "RGB") -> Image.Image:
    image = Image.new("RGB", size, (200, 60, 30))
    image.paste((20, 120, 200), (0, 0, size[0] // 2, size[1]))  # left half blue: orientation is visible
    return image.convert(mode)


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(("data", "kind"), [
    (encoded(picture(), "JPEG"), "jpeg"), (encoded(picture(), "PNG"), "png"), (encoded(picture(), "WEBP"), "webp"),
    (encoded(picture(), "GIF"), "gif"), (b"<html><body>login</body></html>", None), (b"", None),
])
def test_sniff_reads_magic_bytes(data: bytes, kind: str | None) -> None:
    assert sniff(data) == kind


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_other_formats_become_rgb_jpeg(fmt: str) -> None:
    result = normalise(encoded(picture(), fmt), POLICY)
    assert result.status == "ok"
    image = decoded(result.data)
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 43))
    assert (result.width, result.height) == image.size


@pytest.mark.parametrize("mode", ["CMYK", "L", "RGBA", "LA", "P", "1"])
def test_colour_modes_become_rgb(mode: str) -> None:
    fmt = "JPEG" if mode in ("CMYK", "L") else "PNG"
    result = normalise(encoded(picture(mode=mode), fmt), POLICY)
    assert result.status == "ok" and decoded(result.data).mode == "RGB"


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    result = normalise(encoded(image, "PNG"), POLICY)
    assert decoded(result.data).getpixel((5, 5)) == pytest.approx((255, 255, 255), abs=2)


def test_exif_orientation_is_applied() -> None:
    upright = picture((120, 80))
    result = normalise(encoding.exif_rotated_jpeg(upright, 90), ImagePolicy(None, 90, 0, 0, 10**7))
    image = decoded(result.data)
    assert image.size == (120, 80)
    assert image.getexif().get(0x0112, 1) == 1
    left, right = image.getpixel((10, 40)), image.getpixel((110, 40))
    assert left[2] > left[0] and right[0] > right[2]  # blue half back on the left


def test_small_rgb_jpeg_is_kept_byte_for_byte() -> None:
    data = encoded(picture((50, 40)), "JPEG", quality=70)
    result = normalise(data, POLICY)
    assert result.data == data and (result.width, result.height) == (50, 40)


def test_keep_originals_does_not_resize() -> None:
    result = normalise(encoded(picture((300, 200)), "PNG"), ImagePolicy(None, 90, 0, 0, 10**7))
    assert (result.width, result.height) == (300, 200)


def test_sha256_is_of_the_stored_bytes() -> None:
    import hashlib

    result = normalise(encoded(picture(), "PNG"), POLICY)
    assert result.sha256 == hashlib.sha256(result.data).hexdigest()


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"<!doctype html><html>sign in</html>", "not-an-image"),
    (encoding.truncated(encoded(picture((400, 300)), "JPEG")), "undecodable"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "undecodable"),
    (encoding.bomb_png(), "too-many-pixels"),
])
def test_bad_bytes_are_failed_with_a_reason(data: bytes, reason: str) -> None:
    result = normalise(data, POLICY)
    assert (result.status, result.error.split(":")[0]) == ("failed", reason)
    assert result.data == b""


def test_too_small_images_are_skipped() -> None:
    result = normalise(encoded(picture((30, 20)), "JPEG"), ImagePolicy(64, 85, 32, 32, 10**7))
    assert (result.status, result.error) == ("skipped", "too-small: 30x20")


def test_pixel_limit_is_checked_before_decoding() -> None:
    result = normalise(encoded(picture((200, 200)), "PNG"), ImagePolicy(64, 85, 0, 0, 39_999))
    assert result.error.startswith("too-many-pixels: 200x200")


def test_large_jpegs_are_decoded_at_a_reduced_scale_and_still_validated() -> None:
    big = encoded(picture((2400, 1600)), "JPEG", quality=80)
    result = normalise(big, POLICY)
    assert (result.status, result.width, result.height) == ("ok", 64, 43)
    broken = normalise(encoding.truncated(big, 0.3), POLICY)
    assert broken.error.startswith("undecodable")
