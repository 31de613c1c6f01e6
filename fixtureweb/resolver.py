"""An aiohttp resolver that sends every `*.test` host to loopback, for clients of the fixture web that
use host-style URLs (`http://fungi-atlas.test:PORT/...`)."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class LoopbackResolver(AbstractResolver):
    """`*.test` -> 127.0.0.1; any other host goes to the default resolver.

    >>> connector = aiohttp.TCPConnector(resolver=LoopbackResolver())
    """

    def __init__(self, suffix: str = ".test") -> None:
        self.suffix = suffix
        self._fallback: AbstractResolver | None = None

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host.endswith(self.suffix):
            return [ResolveResult(hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET, proto=0,
                                  flags=socket.AI_NUMERICHOST)]
        if self._fallback is None:
            self._fallback = DefaultResolver()
        return await self._fallback.resolve(host, port, family)

    async def close(self) -> None:
        if self._fallback is not None:
            await self._fallback.close()
