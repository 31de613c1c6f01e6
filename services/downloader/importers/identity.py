"""Stable identity: ids derived from the source's own keys, never from a row position."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

_SEPARATOR = "\x1f"  # ASCII unit separator: cannot occur in a URL or an id
_HOST = r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(?P<host>\[[^\]]*\]|[^:/?#]*)"


def image_id(source: str, *keys: str) -> str:
    """The id of one image: 32 hex digits of sha256 over the source name and its keys."""
    joined = _SEPARATOR.join((source, *keys)).encode()
    return hashlib.sha256(joined).hexdigest()[:32]


def image_ids(source: str, *keys: pa.Array) -> pa.Array:
    """Vectorised :func:`image_id` over columns (nulls count as empty strings)."""
    parts = [pa.scalar(source), *(pc.fill_null(key, "") for key in keys)]
    joined = pc.binary_join_element_wise(*parts, _SEPARATOR)
    sha256 = hashlib.sha256
    return pa.array([sha256(value).hexdigest()[:32] for value in _as_bytes(joined)], type=pa.string())


def _as_bytes(strings: pa.Array) -> list[bytes]:
    # Casting to binary is zero-copy; to_pylist then yields bytes without a decode per row.
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    return strings.cast(pa.binary()).to_pylist()


def domains(urls: pa.Array) -> pa.Array:
    """Lower-case host of each URL; empty string where the value is not an absolute URL."""
    urls = pc.fill_null(urls, "")
    # Fast path without regexes: "scheme://authority/..." split on "/" puts the authority third
    # (the padding guarantees a third part for values that are not URLs).
    padded = pc.binary_join_element_wise(urls, "///", "")
    authority = pc.list_element(pc.split_pattern(padded, "/", max_splits=3), 2)
    plain = pc.and_(
        pc.match_substring(urls, "://"),
        pc.invert(pc.match_substring_regex(authority, r"[:@?#]")),
    )
    fast = pc.utf8_lower(authority)
    if pc.all(plain).as_py():
        return fast
    # ports, user info, queries without a path, values that are not URLs
    slow = pc.fill_null(pc.utf8_lower(pc.struct_field(pc.extract_regex(urls, _HOST), "host")), "")
    return pc.if_else(plain, fast, slow)


def is_http_url(urls: pa.Array) -> pa.Array:
    return pc.fill_null(pc.match_substring_regex(urls, r"^https?://[^/?#\s]+", ignore_case=True), False)
