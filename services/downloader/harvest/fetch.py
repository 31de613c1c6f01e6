"""Fetch one image URL: redirects followed by hand (``shared.network_safety.get_following_redirects``: each hop
checked, also against the blacklist), size limits, noai, and a classification of every failure as transient
(retry later) or final."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from shared.curation import Blacklist
from shared.network_safety import (
    BlockedAddress,
    RedirectWithoutLocation,
    TooManyRedirects,
    UnsupportedURL,
    check_url,
    get_following_redirects,
)

logger = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 425, 429, 502, 503, 504})
THROTTLE_STATUS = frozenset({429, 503})
NOAI_DIRECTIVES = frozenset({"noai", "noimageai"})


class Outcome(StrEnum):
    ok = "ok"
    failed = "failed"
    skipped = "skipped"
    retry = "retry"  # transient: worth another try after a pause


@dataclass(frozen=True)
class Fetched:
    outcome: Outcome
    error: str | None = None
    data: bytes = b""
    content_type: str | None = None
    status: int | None = None
    retry_after_s: float | None = None
    throttled: bool = False  # the host asked us to slow down (429/503)
    host_trouble: bool = False  # a sign the host is unwell (timeouts, refused connections, 5xx)
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    max_redirects: int
    allow_loopback: bool


def retry_after_seconds(value: str | None, cap: float = 300.0) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), cap))


def has_noai(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> bool:
    for value in headers.getall("X-Robots-Tag", []):
        for part in value.lower().split(","):
            directive = part.strip().rsplit(":", 1)[-1].strip()  # "otherbot: noai" names a bot; still noai
            if directive in NOAI_DIRECTIVES:
                return True
    return False


class _RedirectBlacklisted(Exception):
    """A redirect leads to a blacklisted URL."""


def _blocked_cause(exc: BaseException) -> BlockedAddress | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BlockedAddress):
            return current
        seen.add(id(current))
        for attribute in ("os_error", "__cause__", "__context__"):
            nested = getattr(current, attribute, None)
            if isinstance(nested, BaseException) and id(nested) not in seen:
                current = nested
                break
        else:
            current = None
    return None


async def fetch_image(
    session: aiohttp.ClientSession, url: str, limits: FetchLimits, blacklist: Blacklist | None = None
) -> Fetched:
    """GET ``url`` following at most ``limits.max_redirects`` redirects, each hop checked anew."""
    started = time.monotonic()

    def check_hop(hop: str) -> None:
        check_url(hop, limits.allow_loopback)
        if blacklist is not None and hop != url and (entry := blacklist.match(hop)) is not None:
            raise _RedirectBlacklisted(entry.entry)

    try:
        async with get_following_redirects(session, url, limits.max_redirects, check_hop) as response:
            return await _read(response, limits, started)
    except _RedirectBlacklisted as exc:
        return Fetched(Outcome.skipped, f"blacklisted: {exc}")
    except RedirectWithoutLocation as exc:
        return Fetched(Outcome.failed, f"http-{exc.status}: redirect without Location")
    except TooManyRedirects:
        return Fetched(Outcome.failed, f"too-many-redirects: more than {limits.max_redirects}",
                       elapsed_s=time.monotonic() - started)
    except UnsupportedURL as exc:
        return Fetched(Outcome.failed, f"unsupported-url: {str(exc)[:200]}")
    except BlockedAddress as exc:
        return Fetched(Outcome.failed, f"blocked-address: {exc}")
    except TimeoutError:
        return Fetched(Outcome.retry, "timeout", host_trouble=True, elapsed_s=time.monotonic() - started)
    except aiohttp.ClientPayloadError as exc:
        return Fetched(Outcome.retry, f"short-body: {str(exc)[:120]}", host_trouble=True,
                       elapsed_s=time.monotonic() - started)
    except aiohttp.ClientError as exc:
        blocked = _blocked_cause(exc)
        if blocked is not None:
            return Fetched(Outcome.failed, f"blocked-address: {blocked}")
        if isinstance(exc, aiohttp.InvalidURL):
            return Fetched(Outcome.failed, f"unsupported-url: {str(exc)[:200]}")
        return Fetched(Outcome.retry, f"connection: {type(exc).__name__}: {str(exc)[:120]}", host_trouble=True,
                       elapsed_s=time.monotonic() - started)


async def _read(response: aiohttp.ClientResponse, limits: FetchLimits, started: float) -> Fetched:
    status = response.status
    content_type = response.headers.get("Content-Type")
    if status in TRANSIENT_STATUS:
        return Fetched(
            Outcome.retry, f"http-{status}", status=status,
            retry_after_s=retry_after_seconds(response.headers.get("Retry-After")),
            throttled=status in THROTTLE_STATUS, host_trouble=status not in THROTTLE_STATUS,
            elapsed_s=time.monotonic() - started,
        )
    if status != 200:
        return Fetched(Outcome.failed, f"http-{status}", status=status, host_trouble=status >= 500,
                       elapsed_s=time.monotonic() - started)
    if has_noai(response.headers):
        return Fetched(Outcome.skipped, "noai: X-Robots-Tag", status=status)
    declared = response.content_length
    if declared is not None and declared > limits.max_bytes:
        return Fetched(Outcome.failed, f"too-large: {declared} bytes declared (limit {limits.max_bytes})",
                       status=status)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limits.max_bytes:
            return Fetched(Outcome.failed, f"too-large: over {limits.max_bytes} bytes", status=status)
        chunks.append(chunk)
    return Fetched(Outcome.ok, None, b"".join(chunks), content_type, status, elapsed_s=time.monotonic() - started)
