"""What a URL shows, and the rendered, cached bytes of it.

URL paths (on any domain):
  /media/<token>.<ext>                    opaque, as in real harvests; the token encodes what it shows;
                                          the domain's random fault rates apply here only
  /img/<token>.<ext>                      the same picture, never a random fault (redirect targets)
  /species/<class>/<seed>[-suffix].<ext>  a photo of class <class>
  /irrelevant/<kind>/<seed>[-suffix].<ext>
  /fault/<fault>/<n>[-suffix].<ext>       fault <fault> over a photo of class n % n_classes
A suffix does not change the picture: `/species/3/7.jpg` and `/species/3/7-copy.jpg` are the same bytes.
"""

from __future__ import annotations

import hashlib
import random
import re
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from fixtureweb import encoding
from fixtureweb.drawing import derive_seed
from fixtureweb.encoding import ImageFormat
from fixtureweb.faults import Fault
from fixtureweb.irrelevant import IrrelevantKind, render_irrelevant
from fixtureweb.species import SpeciesCatalog

SPECIES = "species"
_KIND_CODES: tuple[str, ...] = (SPECIES, *(k.value for k in IrrelevantKind))
_TOKEN_KEY = hashlib.blake2b(b"fixtureweb-media-token", digest_size=8).digest()
_SEED_SEGMENT = re.compile(r"^(\d+)(?:[-_][^/.]*)?\.([A-Za-z]+)$")


@dataclass(frozen=True)
class ImageSpec:
    """The picture itself: a species photo (`kind` "species", `index` = class) or an irrelevant `kind`."""

    kind: str
    index: int
    seed: int

    @property
    def irrelevant(self) -> bool:
        return self.kind != SPECIES

    def dims(self, max_side: int) -> tuple[int, int]:
        """Width and height: the aspect ratio depends on what is shown and on the seed."""
        rng = random.Random(derive_seed("aspect", self.kind, self.seed))
        if self.kind in (IrrelevantKind.HERBARIUM_SHEET, IrrelevantKind.LABEL):
            aspect = rng.choice((2 / 3, 3 / 4, 0.7))
        elif self.kind == IrrelevantKind.ENVELOPE:
            aspect = rng.choice((4 / 3, 3 / 2))
        else:
            aspect = rng.choice((1.0, 4 / 3, 3 / 4, 3 / 2, 4 / 3))
        if aspect >= 1:
            return max_side, max(1, round(max_side / aspect))
        return max(1, round(max_side * aspect)), max_side


def _keystream(check: bytes) -> bytes:
    return hashlib.blake2b(_TOKEN_KEY + check, digest_size=8).digest()


def encode_token(spec: ImageSpec, salt: int = 0) -> str:
    """An opaque 20-hex-digit name for `spec`; a different `salt` gives another URL for the same bytes.
    A 2-byte check both keys the scrambling (so tokens share no visible prefix) and rejects made-up ones."""
    payload = struct.pack(">BHIB", _KIND_CODES.index(spec.kind), spec.index, spec.seed & 0xFFFFFFFF, salt & 0xFF)
    check = hashlib.blake2b(payload, digest_size=2).digest()
    hidden = bytes(a ^ b for a, b in zip(payload, _keystream(check), strict=True))
    return (check + hidden).hex()


def decode_token(token: str) -> tuple[ImageSpec, int] | None:
    try:
        raw = bytes.fromhex(token)
    except ValueError:
        return None
    if len(raw) != 10:
        return None
    check = raw[:2]
    payload = bytes(a ^ b for a, b in zip(raw[2:], _keystream(check), strict=True))
    if hashlib.blake2b(payload, digest_size=2).digest() != check:
        return None
    code, index, seed, salt = struct.unpack(">BHIB", payload)
    if code >= len(_KIND_CODES):
        return None
    return ImageSpec(_KIND_CODES[code], index, seed), salt


def media_path(spec: ImageSpec, fmt: ImageFormat = ImageFormat.JPEG, salt: int = 0) -> str:
    return f"/media/{encode_token(spec, salt)}.{fmt.value}"


@dataclass(frozen=True)
class Resolved:
    """A parsed image path: what it shows, its format, and the fault the path names (if any)."""

    spec: ImageSpec
    fmt: ImageFormat
    fault: Fault | None = None
    media: bool = False


def resolve_path(path: str, n_classes: int) -> Resolved | None:
    """Parse a domain-relative image path; None if it names no image (a 404)."""
    parts = path.strip("/").split("/")
    try:
        if len(parts) == 2 and parts[0] in ("media", "img"):
            token, _, ext = parts[1].partition(".")
            decoded = decode_token(token)
            if decoded is None:
                return None
            spec = decoded[0]
            if not spec.irrelevant and spec.index >= n_classes:
                return None
            return Resolved(spec, ImageFormat.from_extension(ext), media=parts[0] == "media")
        if len(parts) != 3:
            return None
        match = _SEED_SEGMENT.match(parts[2])
        if match is None:
            return None
        number, fmt = int(match.group(1)), ImageFormat.from_extension(match.group(2))
        if parts[0] == "species" and 0 <= int(parts[1]) < n_classes:
            return Resolved(ImageSpec(SPECIES, int(parts[1]), number), fmt)
        if parts[0] == "irrelevant":
            return Resolved(ImageSpec(IrrelevantKind(parts[1]).value, 0, number), fmt)
        if parts[0] == "fault":
            return Resolved(ImageSpec(SPECIES, number % n_classes, number), fmt, fault=Fault(parts[1]))
    except ValueError:
        return None
    return None


class ContentStore:
    """Renders and encodes pictures on demand, keeping the most recent `cache_bytes` of them."""

    def __init__(self, catalog: SpeciesCatalog, cache_bytes: int = 256 * 1024 * 1024) -> None:
        self.catalog = catalog
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.renders = 0  # cache misses, for tests and benchmarks

    def picture(self, spec: ImageSpec, max_side: int) -> Image.Image:
        size = spec.dims(max_side)
        if spec.irrelevant:
            return render_irrelevant(spec.kind, spec.seed, size)
        return self.catalog.render(spec.index, spec.seed, size)

    def cached(self, spec: ImageSpec, fmt: ImageFormat, max_side: int, quality: int,
               variant: Fault | None = None) -> bytes | None:
        with self._lock:
            return self._cache.get((spec, fmt, max_side, quality, variant))

    def image_bytes(self, spec: ImageSpec, fmt: ImageFormat, max_side: int, quality: int,
                    variant: Fault | None = None) -> bytes:
        """Encoded bytes of `spec`; `variant` is one of the faults that change the bytes themselves
        (CMYK, GRAYSCALE, EXIF_ROTATED); others are applied by the server to these bytes."""
        key = (spec, fmt, max_side, quality, variant)
        with self._lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
                return data
        data = self._encode(self.picture(spec, max_side), fmt, quality, variant)
        with self._lock:
            self.renders += 1
            if key not in self._cache:
                self._cache[key] = data
                self._size += len(data)
            while self._size > self.cache_bytes and self._cache:
                _, evicted = self._cache.popitem(last=False)
                self._size -= len(evicted)
        return data

    @staticmethod
    def _encode(picture: Image.Image, fmt: ImageFormat, quality: int, variant: Fault | None) -> bytes:
        if variant == Fault.CMYK:
            return encoding.cmyk_jpeg(picture, quality)
        if variant == Fault.GRAYSCALE:
            return encoding.grayscale_jpeg(picture, quality)
        if variant == Fault.EXIF_ROTATED:
            return encoding.exif_rotated_jpeg(picture, quality)
        return encoding.encode(picture, fmt, quality)

    def cached_bytes(self) -> int:
        return self._size
