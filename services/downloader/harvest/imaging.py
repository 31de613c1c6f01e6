"""Validate and normalise downloaded bytes: magic bytes, a full decode, size limits, EXIF orientation,
RGB JPEG output. Runs in a worker pool (process or thread), so it imports nothing but Pillow."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps

from shared.imaging import to_rgb

ImageFile.LOAD_TRUNCATED_IMAGES = False
# Our own pixel limit (policy.max_pixels) is checked from the header before decoding. Pillow's global
# limit is left alone (other code in the process relies on it): its warning is ignored here, and its
# error (over twice Pillow's limit, ~179 M pixels) is always a bomb.

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def sniff(data: bytes) -> str | None:
    """The image format the bytes start with, or None (HTML, text, empty...)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


@dataclass(frozen=True)
class Normalised:
    """The outcome of one image: either ``data`` (a JPEG to store) or a rejection."""

    status: str  # "ok", "failed" or "skipped"
    error: str | None = None
    data: bytes = b""
    sha256: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ImagePolicy:
    max_side: int | None
    quality: int
    min_width: int
    min_height: int
    max_pixels: int


def normalise(data: bytes, policy: ImagePolicy) -> Normalised:
    """Decode fully, apply orientation, check limits, resize, encode as an RGB JPEG when needed."""
    kind = sniff(data)
    if kind is None:
        return Normalised("failed", "not-an-image: unknown magic bytes" if data else "empty: no bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image: Image.Image = Image.open(io.BytesIO(data))
            except Image.DecompressionBombError as exc:
                return Normalised("failed", f"too-many-pixels: {str(exc)[:120]}")
            width, height = image.size
            if width * height > policy.max_pixels:
                return Normalised("failed", f"too-many-pixels: {width}x{height} (decompression bomb?)")
            if kind == "jpeg" and policy.max_side is not None and min(width, height) >= 2 * policy.max_side:
                # libjpeg scales while decoding (1/2 .. 1/8): every byte is still decoded, at a fraction of
                # the cost; the square request keeps enough pixels whatever the EXIF orientation
                image.draft("RGB", (policy.max_side, policy.max_side))
            image.load()  # the full decode: truncated or corrupt data raises here
    except (OSError, SyntaxError, ValueError) as exc:
        return Normalised("failed", f"undecodable: {type(exc).__name__}: {str(exc)[:120]}")
    orientation = image.getexif().get(0x0112, 1)
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    width, height = image.size
    if width < policy.min_width or height < policy.min_height:
        return Normalised("skipped", f"too-small: {width}x{height}", width=width, height=height)

    needs_resize = policy.max_side is not None and max(width, height) > policy.max_side
    keep_bytes = kind == "jpeg" and image.mode == "RGB" and orientation == 1 and not needs_resize
    if keep_bytes:
        out = data
    else:
        image = to_rgb(image)
        if needs_resize:
            assert policy.max_side is not None
            # Box: each output pixel is the mean of the input area it covers (OpenCV's INTER_AREA, what
            # img2dataset downscales with); a third cheaper than Hamming here (0.50 vs 0.75 ms, 384 -> 256 px)
            image.thumbnail((policy.max_side, policy.max_side), Image.Resampling.BOX, reducing_gap=3.0)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=policy.quality, optimize=False)
        out = buffer.getvalue()
        width, height = image.size
    return Normalised("ok", None, out, hashlib.sha256(out).hexdigest(), width, height)
