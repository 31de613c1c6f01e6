"""Decoding uploaded photos into model input, refusing anything that is not a sane JPEG, PNG or WebP."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from shared.imaging import upright_rgb
from shared.model_input import photo_to_model_input

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})

EMPTY_UPLOAD = "empty upload: send a JPEG, PNG or WebP photo"
NOT_AN_IMAGE = "the upload is not an image: send a JPEG, PNG or WebP photo"
UNSUPPORTED_FORMAT = "unsupported image format: send a JPEG, PNG or WebP photo"
TRUNCATED_IMAGE = "the image is truncated or corrupt"
TOO_MANY_PIXELS = "the image has too many pixels"
UPLOAD_TOO_LARGE = "the upload is larger than the size limit"


class ImageRejected(ValueError):
    """A photo the service refuses; ``status_code`` and ``detail`` go to the client as they are."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def open_photo(data: bytes, max_pixels: int, max_bytes: int) -> Image.Image:
    """Decode ``data`` into an upright RGB image (EXIF orientation applied, transparency on white).

    Every pixel is decoded (no JPEG draft mode): training decodes the full image too, and the same stored
    file must give the same model input in both (shared/imaging.py).
    """
    if not data:
        raise ImageRejected(400, EMPTY_UPLOAD)
    if len(data) > max_bytes:
        raise ImageRejected(413, UPLOAD_TOO_LARGE)
    with warnings.catch_warnings():
        # Pillow only warns between its own limit and twice it; ours is checked on the header below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise ImageRejected(413, TOO_MANY_PIXELS) from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise ImageRejected(415, NOT_AN_IMAGE) from None
        if image.format not in SUPPORTED_FORMATS:
            raise ImageRejected(415, UNSUPPORTED_FORMAT)
        width, height = image.size
        if width < 1 or height < 1 or width * height > max_pixels:
            raise ImageRejected(413, TOO_MANY_PIXELS)
        try:
            image.load()
            return upright_rgb(image)
        except Image.DecompressionBombError:
            raise ImageRejected(413, TOO_MANY_PIXELS) from None
        except (OSError, ValueError, SyntaxError, EOFError):
            raise ImageRejected(422, TRUNCATED_IMAGE) from None


def decode_for_model(data: bytes, image_size: int, max_pixels: int, max_bytes: int) -> tuple[np.ndarray, Image.Image]:
    """The model's input for an upload (float32 RGB in [0, 255], ``image_size`` square) and the decoded photo."""
    photo = open_photo(data, max_pixels, max_bytes)
    return photo_to_model_input(photo, image_size), photo
