"""Downloader settings (prefix ``SPOREPRINT_DOWNLOADER_``): network safety, politeness and harvest defaults.

The shared settings (storage, Redis, token, curator URL) stay in :mod:`shared.settings`; these are the knobs
only the harvester has.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import SporeprintSettings

DEFAULT_USER_AGENT = "sporeprint-harvester/0.1 (biodiversity image research; respects X-Robots-Tag noai)"


class DownloaderSettings(SporeprintSettings):
    model_config = SettingsConfigDict(
        env_prefix="SPOREPRINT_DOWNLOADER_", env_ignore_empty=True, extra="ignore"
    )

    # Network safety. URLs come from untrusted files: private, loopback and link-local addresses are
    # refused after DNS resolution and on every redirect. Tests and the benchmark allow loopback for the
    # fixture web; private ranges (10/8, 172.16/12, 192.168/16, 169.254/16, ...) are never allowed.
    allow_loopback: bool = False
    # Host -> IP overrides like curl --resolve; keys are exact names or fnmatch patterns ("*.test").
    resolve: dict[str, str] = Field(default_factory=dict)
    user_agent: str = DEFAULT_USER_AGENT

    # Where the last blacklist fetched from the curator is kept for when the curator is down.
    blacklist_cache_key: str = "curation/blacklist-cache.json"
    blacklist_timeout_s: float = Field(default=5.0, gt=0)

    # How long a running harvest's lease lives without renewal: a worker killed with -9 lets another
    # worker resume the harvest after this many seconds.
    lease_ttl_s: int = Field(default=15, ge=2)
    # RQ retries of a harvest job whose worker died (RQ notices through the job heartbeat).
    job_retries: int = Field(default=2, ge=0)
    # A harvest is split into shards of at most this many rows to fetch (one domain's rows together), each an
    # RQ job on queue ``harvest`` that any worker on any host takes; the last job merges them into one version.
    shard_rows: int = Field(default=2000, ge=1)
    # How long a slot of a domain's global politeness limit (``harvest/politeness.py``) lives without renewal: the
    # slots of a worker killed with -9 come free after this long.
    politeness_lease_s: float = Field(default=5.0, ge=1)
    checkpoint_interval_s: float = Field(default=2.0, gt=0)
    progress_interval_s: float = Field(default=0.5, gt=0)

    # A worker fetches its shard with one event loop and a thread pool for the CPU work (Pillow lets go of the
    # interpreter lock while it decodes and resizes). One worker keeps about two CPUs busy: to use more cores,
    # run more RQ workers on queue ``harvest``, one per core.
    cpu_threads: int = Field(default=0, ge=0, description="threads decoding and resizing images; 0: two per usable CPU")
    # Concurrent uploads to object storage, per worker.
    store_concurrency: int = Field(default=16, ge=1)
    max_upload_bytes: int = Field(default=200 * 1024 * 1024, ge=1)


@lru_cache
def get_downloader_settings() -> DownloaderSettings:
    return DownloaderSettings()
