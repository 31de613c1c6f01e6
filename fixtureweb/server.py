"""The aiohttp application serving every fixture domain.

Routing: by Host header (`http://fungi-atlas.test:PORT/media/...`) or, when the Host is an IP address or
`localhost`, by the first path segment (`http://127.0.0.1:PORT/fungi-atlas.test/media/...`). Redirects
keep the style the request came in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import urlsplit

from aiohttp import web

from fixtureweb import encoding
from fixtureweb.config import DomainConfig, WebConfig
from fixtureweb.content import ContentStore, ImageSpec, Resolved, encode_token, resolve_path
from fixtureweb.drawing import derive_seed
from fixtureweb.encoding import ImageFormat
from fixtureweb.faults import PRIVATE_REDIRECT_TARGET, Fault, assigned_fault
from fixtureweb.requestlog import RequestLog
from fixtureweb.species import SpeciesCatalog

logger = logging.getLogger(__name__)

STATS_PATH = "/_fixtureweb/stats"
_BYTE_VARIANTS = (Fault.CMYK, Fault.GRAYSCALE, Fault.EXIF_ROTATED)
_LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)


@dataclass(frozen=True)
class Route:
    domain: DomainConfig
    path: str
    by_host: bool

    def url(self, request: web.Request, path: str, domain: str | None = None) -> str:
        """An absolute URL for `path` on `domain` (default: this one) in the request's routing style."""
        name = domain or self.domain.name
        if self.by_host:
            port = request.url.port
            return f"http://{name}:{port}{path}" if port else f"http://{name}{path}"
        return f"http://{request.host}/{name}{path}"


def _is_ip_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class FixtureHandler:
    """Resolves a request to a domain and an image, applies the domain's behaviour and faults."""

    def __init__(self, config: WebConfig, store: ContentStore | None = None, log: RequestLog | None = None) -> None:
        self.config = config
        self.store = store or ContentStore(SpeciesCatalog(config.n_classes, config.seed), config.cache_bytes)
        self.log = log or RequestLog()
        self._domains = {d.name: d for d in config.domains}
        self._in_flight: dict[str, int] = dict.fromkeys(self._domains, 0)

    # --- routing -------------------------------------------------------------------------------------
    def route(self, host: str, path: str) -> Route | None:
        hostname = host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()
        if hostname in self._domains:
            return Route(self._domains[hostname], path or "/", by_host=True)
        if _is_ip_or_localhost(hostname):
            first, _, rest = path.lstrip("/").partition("/")
            if first.lower() in self._domains:
                return Route(self._domains[first.lower()], "/" + rest, by_host=False)
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == STATS_PATH:
            return web.json_response(self.log.snapshot())
        route = self.route(request.host, request.path)
        if route is None:
            if _is_ip_or_localhost(request.host.rsplit(":", 1)[0]) and request.path == "/":
                return self._index()
            return web.Response(status=404, text=f"no such fixture host or path: {request.host}{request.path}")
        domain = route.domain
        hits = self.log.hit(domain.name, route.path)
        self.log.entered(domain.name)
        try:
            response = await self._gate(request, route, hits)
        except ValueError as exc:  # a malformed knob in the query string, e.g. ?times=x
            response = web.Response(status=400, text=f"bad query: {exc}")
        finally:
            self.log.left(domain.name)
        self.log.status(domain.name, response.status)
        return response

    def _index(self) -> web.Response:
        links = "".join(f"<li><a href='/{d}/'>{d}</a></li>" for d in self.config.domain_names)
        return web.Response(text=f"<html><body><h1>fixture web</h1><ul>{links}</ul></body></html>",
                            content_type="text/html")

    async def _gate(self, request: web.Request, route: Route, hits: int) -> web.StreamResponse:
        domain = route.domain
        if domain.max_concurrent is not None and self._in_flight[domain.name] >= domain.max_concurrent:
            return self._too_many(domain, 429)
        self._in_flight[domain.name] += 1
        try:
            rng = random.Random(derive_seed("latency", domain.name, route.path, hits))
            delay = domain.latency.sample_s(rng)
            if delay:
                await asyncio.sleep(delay)
            return await self._respond(request, route, hits)
        finally:
            self._in_flight[domain.name] -= 1

    # --- responses -----------------------------------------------------------------------------------
    async def _respond(self, request: web.Request, route: Route, hits: int) -> web.StreamResponse:
        domain, path = route.domain, route.path
        if path == "/robots.txt":
            return web.Response(text="User-agent: *\nAllow: /\n")
        if path == "/":
            return web.Response(text=f"<html><body><h1>{domain.publisher or domain.name}</h1></body></html>",
                                content_type="text/html")
        if path.startswith("/observations/"):
            return web.Response(body=encoding.html_page(f"Observation {path.rsplit('/', 1)[-1]}",
                                                        "A fixture observation page."), content_type="text/html")
        resolved = resolve_path(path, self.config.n_classes)
        if resolved is None:
            return web.Response(status=404, text="not found")
        fault = resolved.fault
        if fault is None and resolved.media:
            fault = assigned_fault(domain.name, path, domain.fault_rates)
        return await self._fault(request, route, resolved, fault, hits)

    async def _fault(self, request: web.Request, route: Route, res: Resolved, fault: Fault | None,
                     hits: int) -> web.StreamResponse:
        domain = route.domain
        query = request.query
        if fault == Fault.NOT_FOUND:
            return web.Response(status=404, text="not found")
        if fault == Fault.SERVER_ERROR:
            return web.Response(status=500, body=encoding.html_page("Internal Server Error", "Try later."),
                                content_type="text/html")
        if fault is not None and fault.transient:
            times = int(query.get("times", domain.transient_failures))
            if times < 0 or hits <= times:
                return self._too_many(domain, 503 if fault == Fault.UNAVAILABLE else 429)
        if fault == Fault.HANG:
            await asyncio.sleep(float(query.get("seconds", domain.hang_s)))
        if fault in (Fault.REDIRECT, Fault.REDIRECT_CHAIN, Fault.REDIRECT_LOOP, Fault.REDIRECT_PRIVATE,
                     Fault.REDIRECT_OFFSITE):
            return self._redirect(request, route, res, fault)
        if fault in (Fault.HTML, Fault.HTML_AS_IMAGE):
            body = encoding.html_page("Sign in", "You must be logged in to view this image.")
            return web.Response(body=body, headers={"Content-Type": "text/html; charset=utf-8" if fault == Fault.HTML
                                                    else "image/jpeg"})
        if fault == Fault.EMPTY:
            return web.Response(body=b"", headers={"Content-Type": res.fmt.mime})
        if fault == Fault.BOMB:
            return web.Response(body=encoding.bomb_png(), headers=self._headers(domain, "image/png", fault))

        fmt = ImageFormat.JPEG if fault in _BYTE_VARIANTS else res.fmt
        data = await self.image_bytes(domain, res.spec, fmt, fault, int(query.get("size", domain.image_size)))
        headers = self._headers(domain, "text/plain" if fault == Fault.WRONG_TYPE else fmt.mime, fault)
        if fault == Fault.TRUNCATED:
            return web.Response(body=encoding.truncated(data), headers=headers)
        if fault == Fault.SLOW:
            rate = int(query.get("rate", domain.trickle_bytes_per_s))
            return await self._stream(request, data, headers, chunk=max(1, rate // 10), pause=0.1)
        if fault == Fault.SHORT_BODY:
            return await self._short_body(request, data, headers)
        if fault in (Fault.OVERSIZED, Fault.OVERSIZED_CHUNKED):
            total = int(query.get("bytes", domain.oversized_bytes))
            big = await asyncio.get_running_loop().run_in_executor(None, encoding.padded_jpeg, data, total)
            if fault == Fault.OVERSIZED:
                return web.Response(body=big, headers=headers)
            return await self._stream(request, big, headers, chunk=256 * 1024, pause=0.0, chunked=True)
        return web.Response(body=data, headers=headers)

    def _headers(self, domain: DomainConfig, content_type: str, fault: Fault | None) -> dict[str, str]:
        headers = {"Content-Type": content_type, "Cache-Control": "public, max-age=86400",
                   "Last-Modified": _LAST_MODIFIED}
        if domain.noai or fault == Fault.NOAI:
            headers["X-Robots-Tag"] = "noai"
        return headers

    def _too_many(self, domain: DomainConfig, status: int) -> web.Response:
        reason = "Too Many Requests" if status == 429 else "Service Unavailable"
        return web.Response(status=status, text=reason, headers={"Retry-After": str(domain.retry_after_s)})

    def _redirect(self, request: web.Request, route: Route, res: Resolved, fault: Fault) -> web.Response:
        clean = f"/img/{encode_token(res.spec)}.{res.fmt.value}" if res.media else \
            f"/species/{res.spec.index}/{res.spec.seed}.{res.fmt.value}"
        if fault == Fault.REDIRECT_PRIVATE:
            location = PRIVATE_REDIRECT_TARGET
        elif fault == Fault.REDIRECT_LOOP:
            location = route.url(request, route.path) + (f"?{request.query_string}" if request.query_string else "")
        elif fault == Fault.REDIRECT_CHAIN:
            hop = int(request.query.get("hop", 0)) + 1
            hops = int(request.query.get("hops", 3))
            location = route.url(request, clean) if hop >= hops else \
                route.url(request, route.path) + f"?hops={hops}&hop={hop}"
        elif fault == Fault.REDIRECT_OFFSITE:
            names = self.config.domain_names
            other = names[(names.index(route.domain.name) + 1) % len(names)]
            location = route.url(request, clean, domain=other)
        else:
            location = route.url(request, clean)
        return web.Response(status=302, headers={"Location": location})

    async def _stream(self, request: web.Request, data: bytes, headers: dict[str, str], *, chunk: int,
                      pause: float, chunked: bool = False) -> web.StreamResponse:
        response = web.StreamResponse(headers=headers)
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(data)
        await response.prepare(request)
        for start in range(0, len(data), chunk):
            await response.write(data[start:start + chunk])
            if pause:
                await asyncio.sleep(pause)
        await response.write_eof()
        return response

    async def _short_body(self, request: web.Request, data: bytes, headers: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(headers=headers)
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        if request.transport is not None:
            request.transport.close()
        return response

    # --- content -------------------------------------------------------------------------------------
    async def image_bytes(self, domain: DomainConfig, spec: ImageSpec, fmt: ImageFormat, fault: Fault | None,
                          max_side: int | None = None) -> bytes:
        """Bytes of `spec` as `domain` serves them; rendered off the event loop on a cache miss."""
        args = self._content_args(domain, spec, fmt, fault, max_side)
        data = self.store.cached(*args)
        if data is None:
            data = await asyncio.get_running_loop().run_in_executor(None, self.store.image_bytes, *args)
        return data

    def image_bytes_sync(self, domain: DomainConfig, spec: ImageSpec, fmt: ImageFormat, fault: Fault | None,
                         max_side: int | None = None) -> bytes:
        return self.store.image_bytes(*self._content_args(domain, spec, fmt, fault, max_side))

    def _content_args(self, domain: DomainConfig, spec: ImageSpec, fmt: ImageFormat, fault: Fault | None,
                      max_side: int | None) -> tuple[ImageSpec, ImageFormat, int, int, Fault | None]:
        lo, hi = domain.jpeg_quality
        quality = random.Random(derive_seed("quality", domain.name, spec.seed)).randint(min(lo, hi), max(lo, hi))
        side = max(8, min(4096, max_side or domain.image_size))
        return spec, fmt, side, quality, fault if fault in _BYTE_VARIANTS else None

    def warm(self, url: str) -> bool:
        """Render and cache what `url` serves (when it serves an image); True if it does."""
        parts = urlsplit(url)
        route = self.route(parts.netloc, parts.path)
        if route is None:
            return False
        res = resolve_path(route.path, self.config.n_classes)
        if res is None:
            return False
        fault = res.fault or (assigned_fault(route.domain.name, route.path, route.domain.fault_rates)
                              if res.media else None)
        fmt = ImageFormat.JPEG if fault in _BYTE_VARIANTS else res.fmt
        self.image_bytes_sync(route.domain, res.spec, fmt, fault)
        return True


def build_app(handler: FixtureHandler) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    return app
