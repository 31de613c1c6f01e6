"""Decoding uploads: formats, EXIF orientation, and every kind of bad input refused with its own message."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from services.inference.images import (
    EMPTY_UPLOAD,
    NOT_AN_IMAGE,
    TOO_MANY_PIXELS,
    TRUNCATED_IMAGE,
    UNSUPPORTED_FORMAT,
    UPLOAD_TOO_LARGE,
    ImageRejected,
    decode_for_model,
    open_photo,
)

pytestmark = pytest.mark.unit

LIMIT_PIXELS = 1_000_000
LIMIT_BYTES = 1_000_000


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(size: tuple[int, int] = (80, 40)) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.uint8)
    rgb = np.stack([np.tile(x, (size[1], 1)), np.zeros((size[1], size[0]), np.uint8),
                    np.full((size[1], size[0]), 200, np.uint8)], axis=-1)
    return Image.fromarray(rgb)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_supported_formats_become_float_rgb_model_input(fmt: str) -> None:
    image, photo = decode_for_model(encode(gradient(), fmt), 32, LIMIT_PIXELS, LIMIT_BYTES)
    assert image.shape == (32, 32, 3) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 255 and image[:, -1, 0].mean() > image[:, 0, 0].mean() + 100
    assert photo.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_other_colour_modes_are_converted(mode: str) -> None:
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    image, _ = decode_for_model(encode(gradient().convert(mode), fmt), 16, LIMIT_PIXELS, LIMIT_BYTES)
    assert image.shape == (16, 16, 3)


def test_exif_orientation_is_applied() -> None:
    upright = gradient((80, 40))  # wide; left dark, right bright
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # tall, as a sideways camera stores it
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = open_photo(encode(stored, "PNG", exif=exif.tobytes()), LIMIT_PIXELS, LIMIT_BYTES)
    assert photo.size == (80, 40)
    assert np.array_equal(np.asarray(photo), np.asarray(upright))


def _bomb() -> bytes:
    return encode(Image.new("1", (2000, 2000)), "PNG")


def _truncated() -> bytes:
    data = encode(Image.effect_noise((256, 256), 60).convert("RGB"), "JPEG", quality=95)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "status", "detail"),
    [
        (b"", 400, EMPTY_UPLOAD),
        (b"plain text, not a photo", 415, NOT_AN_IMAGE),
        (b"\xff\xd8\xff\xe0garbage", 415, NOT_AN_IMAGE),
        ("gif", 415, UNSUPPORTED_FORMAT),
        ("bmp", 415, UNSUPPORTED_FORMAT),
        ("truncated", 422, TRUNCATED_IMAGE),
        ("bomb", 413, TOO_MANY_PIXELS),
        (b"\x89PNG" + b"\0" * LIMIT_BYTES, 413, UPLOAD_TOO_LARGE),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(data: bytes | str, status: int, detail: str) -> None:
    payload = {"gif": lambda: encode(gradient(), "GIF"), "bmp": lambda: encode(gradient(), "BMP"),
               "truncated": _truncated, "bomb": _bomb}[data]() if isinstance(data, str) else data
    with pytest.raises(ImageRejected) as refused:
        open_photo(payload, LIMIT_PIXELS, LIMIT_BYTES)
    assert (refused.value.status_code, refused.value.detail) == (status, detail)
