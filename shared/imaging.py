"""Pillow-side image handling every service shares: EXIF orientation, transparency composited on white, 16-bit
grey to 8 bits.

The harvester stores images this way, and /predict decodes uploads this way, so a photo with an alpha channel
looks the same to training and to serving. (The TensorFlow half of the one model-input path is
:mod:`shared.model_input`; this module stays TensorFlow-free for the downloader.)
"""

from __future__ import annotations

from PIL import Image, ImageOps


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency composited on white and 16-bit grey scaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def upright_rgb(image: Image.Image) -> Image.Image:
    """A decoded image as it is meant to be seen (EXIF orientation applied) in RGB (:func:`to_rgb`): how /predict
    and the curator both read a photo, so the same file gives the relevance gate the same input in each."""
    return to_rgb(ImageOps.exif_transpose(image) or image)
