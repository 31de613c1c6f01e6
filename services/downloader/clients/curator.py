"""The downloader's client of the curator: only ``GET /blacklist``.

A small async context manager around an ``aiohttp.ClientSession`` with a timeout, returning the shared
contract type (:class:`shared.curation.Blacklist`).
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import aiohttp
from pydantic import ValidationError

from shared.curation import Blacklist


class CuratorUnavailable(RuntimeError):
    """The curator did not answer, or answered something that is not a blacklist."""


class CuratorClient:
    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=self.timeout, trust_env=False)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def blacklist(self) -> Blacklist:
        if self._session is None:
            raise RuntimeError("use CuratorClient as 'async with CuratorClient(url) as curator'")
        try:
            async with self._session.get(f"{self.base_url}/blacklist",
                                         headers={"Accept": "application/json"}) as response:
                if response.status != 200:
                    raise CuratorUnavailable(f"GET /blacklist answered {response.status}")
                return Blacklist.model_validate_json(await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CuratorUnavailable(f"GET {self.base_url}/blacklist failed: {exc!r}") from exc
        except ValidationError as exc:
            raise CuratorUnavailable(f"GET /blacklist returned something that is not a blacklist: {exc}") from exc
