"""One typed client per service, for the CLI, the demo, the tests and the other services.

``with DownloaderClient(settings.downloader_url, settings.api_token) as downloader: downloader.harvest("fungi")``;
one module per service (``shared.clients.downloader``, ``.curator``, ``.trainer``, ``.inference``). Every
failure is a :class:`ServiceUnavailable` (cannot reach it, 5xx, an answer outside its contract) or a
:class:`ServiceRefused` (4xx, with the service's detail); both are a :class:`ServiceError`.
"""

from shared.clients.base import ServiceClient, ServiceError, ServiceRefused, ServiceUnavailable

__all__ = ["ServiceClient", "ServiceError", "ServiceRefused", "ServiceUnavailable"]
