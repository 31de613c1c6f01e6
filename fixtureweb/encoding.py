"""Image bytes as hosts really serve them: formats, odd colour modes, EXIF rotation and broken files."""

from __future__ import annotations

import io
import struct
import zlib
from enum import StrEnum
from functools import lru_cache

from PIL import Image

ORIENTATION_TAG = 0x0112


class ImageFormat(StrEnum):
    """Served formats, named by their URL extension."""

    JPEG = "jpg"
    PNG = "png"
    WEBP = "webp"

    @property
    def mime(self) -> str:
        return {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}[self.value]

    @classmethod
    def from_extension(cls, ext: str) -> ImageFormat:
        ext = ext.lower().lstrip(".")
        return cls.JPEG if ext == "jpeg" else cls(ext)


def encode(image: Image.Image, fmt: ImageFormat, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    if fmt == ImageFormat.JPEG:
        image.save(buf, "JPEG", quality=quality)
    elif fmt == ImageFormat.PNG:
        image.save(buf, "PNG", compress_level=1)
    else:
        image.save(buf, "WEBP", quality=quality, method=0)
    return buf.getvalue()


def cmyk_jpeg(image: Image.Image, quality: int = 85) -> bytes:
    """A CMYK JPEG, as print-oriented workflows (scanned specimens) produce."""
    return encode(image.convert("CMYK"), ImageFormat.JPEG, quality)


def grayscale_jpeg(image: Image.Image, quality: int = 85) -> bytes:
    return encode(image.convert("L"), ImageFormat.JPEG, quality)


def exif_rotated_jpeg(image: Image.Image, quality: int = 85) -> bytes:
    """Pixels stored turned 90° counter-clockwise with EXIF Orientation 6 ("rotate 90° CW to display"),
    as phone cameras write them: `ImageOps.exif_transpose` gives back the upright `image`."""
    stored = image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    """The first `fraction` of a file: headers intact, entropy-coded data cut off, no end marker."""
    return data[: max(64, int(len(data) * fraction))]


def padded_jpeg(jpeg: bytes, total_bytes: int) -> bytes:
    """A valid JPEG of about `total_bytes`: the picture plus COM (comment) segments right after SOI."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    max_payload = 65533
    segments = []
    remaining = max(0, total_bytes - len(jpeg))
    while remaining > 4:
        payload = min(max_payload, remaining - 4)
        segments.append(b"\xff\xfe" + struct.pack(">H", payload + 2) + b"\x00" * payload)
        remaining -= payload + 4
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@lru_cache(maxsize=4)
def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A small, valid PNG that declares width*height 1-bit pixels (default 400 M): a decompression bomb.
    All pixels are 0, so the zlib stream compresses about 1000:1."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = max(1, (1 << 20) // len(row))
    block = row * rows_per_block
    parts = []
    done = 0
    while done < height:
        n = min(rows_per_block, height - done)
        parts.append(compressor.compress(block if n == rows_per_block else row * n))
        done += n
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


def html_page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h1>{title}</h1><p>{body}</p></body></html>").encode()
