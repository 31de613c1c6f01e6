"""The ways an image host misbehaves, and which URL gets which.

A fault is chosen either explicitly by the URL (`/fault/<name>/<n>.<ext>`) or, for the realistic `/media/`
namespace, by a hash of (domain, path) against the domain's `fault_rates`: the same URL always gets the
same fault, in the server and in the export's ground truth alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from fixtureweb.drawing import derive_seed


class Fault(StrEnum):
    NOT_FOUND = "not-found"  # 404
    SERVER_ERROR = "server-error"  # 500
    UNAVAILABLE = "unavailable"  # 503 + Retry-After for the first `transient_failures` requests, then 200
    RATE_LIMITED = "rate-limited"  # 429 + Retry-After for the first `transient_failures` requests, then 200
    HANG = "hang"  # no response for a long time (client timeouts)
    SLOW = "slow"  # headers at once, body trickles at `trickle_bytes_per_s`
    REDIRECT = "redirect"  # 302 to the clean image on the same host
    REDIRECT_CHAIN = "redirect-chain"  # several 302 hops, then the image
    REDIRECT_LOOP = "redirect-loop"  # 302 to itself, forever
    REDIRECT_PRIVATE = "redirect-private"  # 302 to http://10.0.0.1/x.jpg (SSRF bait: never follow)
    REDIRECT_OFFSITE = "redirect-offsite"  # 302 to the same image on another fixture domain
    WRONG_TYPE = "wrong-type"  # image bytes served as text/plain
    HTML = "html"  # an HTML page (login wall) with text/html
    HTML_AS_IMAGE = "html-as-image"  # an HTML page served as image/jpeg
    EMPTY = "empty"  # 200 with a zero-length body
    TRUNCATED = "truncated"  # the first half of a JPEG, honest Content-Length
    SHORT_BODY = "short-body"  # full Content-Length declared, connection closed half-way
    OVERSIZED = "oversized"  # a valid JPEG padded to `oversized_bytes`, with Content-Length
    OVERSIZED_CHUNKED = "oversized-chunked"  # the same, chunked: no Content-Length to check up front
    BOMB = "bomb"  # a small PNG declaring 20000 x 20000 pixels
    EXIF_ROTATED = "exif-rotated"  # JPEG stored sideways with EXIF Orientation 6
    CMYK = "cmyk"  # CMYK JPEG
    GRAYSCALE = "grayscale"  # single-channel JPEG
    NOAI = "noai"  # the image with `X-Robots-Tag: noai`

    @property
    def transient(self) -> bool:
        return self in (Fault.UNAVAILABLE, Fault.RATE_LIMITED)

    @property
    def yields_usable_image(self) -> bool:
        """Whether a careful downloader ends up with a good image (after retries/redirects/conversion)."""
        return self in _USABLE


_USABLE = frozenset({
    Fault.UNAVAILABLE, Fault.RATE_LIMITED, Fault.SLOW, Fault.REDIRECT, Fault.REDIRECT_CHAIN,
    Fault.REDIRECT_OFFSITE, Fault.WRONG_TYPE, Fault.EXIF_ROTATED, Fault.CMYK, Fault.GRAYSCALE,
})

PRIVATE_REDIRECT_TARGET = "http://10.0.0.1/x.jpg"

# Rates of a typical public photo host; herbarium hosts and tests pick their own.
DEFAULT_FAULT_RATES: Mapping[Fault, float] = {
    Fault.NOT_FOUND: 0.03,
    Fault.SERVER_ERROR: 0.01,
    Fault.UNAVAILABLE: 0.01,
    Fault.RATE_LIMITED: 0.01,
    Fault.SLOW: 0.003,
    Fault.REDIRECT: 0.02,
    Fault.REDIRECT_CHAIN: 0.005,
    Fault.REDIRECT_PRIVATE: 0.001,
    Fault.WRONG_TYPE: 0.01,
    Fault.HTML: 0.005,
    Fault.TRUNCATED: 0.005,
    Fault.OVERSIZED: 0.001,
    Fault.BOMB: 0.0005,
    Fault.EXIF_ROTATED: 0.02,
    Fault.CMYK: 0.005,
    Fault.GRAYSCALE: 0.005,
}


def assigned_fault(domain: str, path: str, rates: Mapping[Fault, float]) -> Fault | None:
    """The fault a `/media/` URL has on `domain`: fixed by a hash, so server and ground truth agree."""
    if not rates:
        return None
    u = (derive_seed("fault", domain, path) % 1_000_000) / 1_000_000
    acc = 0.0
    for fault in Fault:  # enum order, not dict order: rates given in any order mean the same thing
        acc += rates.get(fault, 0.0)
        if u < acc:
            return fault
    return None
