"""The blacklist contract: what the curator serves at ``GET /blacklist`` and the downloader obeys.

An entry is a domain (``mycoportal.org``: that host and its subdomains) or a domain plus a
path prefix (``mediaphoto.mnhn.fr/media/``: only URLs under that path).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The domains the first team blacklisted by hand (DESIGN.md); the curator seeds its list with them.
SEED_BLACKLIST: dict[str, str] = {
    "data.huh.harvard.edu": "herbarium sheets (seed list)",
    "fm-digital-assets.fieldmuseum.org": "herbarium sheets (seed list)",
    "mycoportal.org": "specimen labels and herbarium sheets (seed list)",
    "s3.msi.umn.edu/": "herbarium sheets (seed list)",
    "mediaphoto.mnhn.fr/media/": "herbarium sheets (seed list)",
    "unimus.no/felles/": "specimen envelopes (seed list)",
    "oxalis.br.fgov.be/images": "herbarium sheets (seed list)",
}

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_ENTRY = re.compile(rf"^(?P<domain>{_LABEL}(?:\.{_LABEL})+)(?P<path>/[^\s?#]*)?$")


class InvalidEntry(ValueError):
    """Not a domain or domain/path-prefix."""


MAX_HOSTNAME = 253
MAX_LABEL = 63
MAX_PATH_PREFIX = 2048


def parse_entry(entry: str) -> tuple[str, str | None]:
    """``"Host.org/path/"`` -> ``("host.org", "/path/")``; ``"host.org"`` -> ``("host.org", None)``.

    The host is IDNA-normalised (``"Pilzé.de"`` -> ``"xn--pilz-epa.de"``, as it appears in URLs), at most 253
    characters with labels of at most 63; a path prefix is at most 2,048 characters. Raises :class:`InvalidEntry`
    saying which rule the entry breaks.
    """
    normalized = entry.strip()
    if "://" in normalized:
        raise InvalidEntry(f"blacklist entry {entry[:80]!r}: give a domain or domain/path, not a URL with a scheme")
    host, slash, rest = normalized.partition("/")
    if len(rest) + 1 > MAX_PATH_PREFIX:
        raise InvalidEntry(f"blacklist entry {entry[:80]!r}...: the path prefix is longer than {MAX_PATH_PREFIX}")
    if len(host) > MAX_HOSTNAME:
        raise InvalidEntry(f"blacklist entry {entry[:80]!r}...: the host is longer than {MAX_HOSTNAME} characters")
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise InvalidEntry(f"blacklist entry {entry[:80]!r}: the host is not a valid domain name ({exc})") from None
    labels = ascii_host.split(".")
    if len(ascii_host) > MAX_HOSTNAME or any(len(label) > MAX_LABEL for label in labels):
        raise InvalidEntry(f"blacklist entry {entry[:80]!r}: host labels are at most {MAX_LABEL} characters and "
                           f"the host at most {MAX_HOSTNAME}")
    match = _ENTRY.match(ascii_host + slash + rest)
    if not match:
        raise InvalidEntry(f"blacklist entry {entry[:80]!r} is not a domain (example.org) or domain/path "
                           "(example.org/x/)")
    path = match.group("path")
    return match.group("domain"), (path if path and path != "/" else None)


def canonical_entry(entry: str) -> tuple[str, str, str | None]:
    """``(canonical entry, domain, path prefix)``: ``"Host.org/x/"`` -> ``("host.org/x/", "host.org", "/x/")``."""
    domain, path = parse_entry(entry)
    return (domain + path if path else domain), domain, path


class BlacklistEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entry: str = Field(description="domain or domain/path-prefix, lower-case host")
    domain: str
    path_prefix: str | None = None
    reason: str
    added_by: str
    added_at: datetime

    @field_validator("entry")
    @classmethod
    def _valid_entry(cls, value: str) -> str:
        parse_entry(value)
        return value

    def matches(self, host: str, path: str) -> bool:
        host = host.lower()
        if host != self.domain and not host.endswith("." + self.domain):
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


class Blacklist(BaseModel):
    """The whole list, as served by the curator and cached by the downloader."""

    model_config = ConfigDict(extra="forbid")

    entries: list[BlacklistEntry] = Field(default_factory=list)
    revision: int = Field(default=0, description="increases with every change")

    def match(self, url: str) -> BlacklistEntry | None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        for item in self.entries:
            if item.matches(host, parts.path or "/"):
                return item
        return None


# The seed list's revision and date: the same for the curator (before anyone edits the list) and for a
# downloader that has never reached the curator.
SEED_REVISION = 1
SEED_ADDED_AT = datetime(2024, 1, 1, tzinfo=UTC)


def seed_blacklist() -> Blacklist:
    """The blacklist before anyone has edited it: :data:`SEED_BLACKLIST`, entries in canonical form."""
    entries = []
    for raw, reason in sorted(SEED_BLACKLIST.items()):
        canonical, domain, path = canonical_entry(raw)
        entries.append(BlacklistEntry(entry=canonical, domain=domain, path_prefix=path, reason=reason,
                                      added_by="seed", added_at=SEED_ADDED_AT))
    return Blacklist(entries=sorted(entries, key=lambda e: e.entry), revision=SEED_REVISION)


CONTRACT_MODELS: dict[str, type[BaseModel]] = {"BlacklistEntry": BlacklistEntry, "Blacklist": Blacklist}
