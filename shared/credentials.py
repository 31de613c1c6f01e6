"""S3 credentials when no static keys are set: the AWS credential chain, as the AWS SDKs walk it.

Tried in this order; the first that answers wins, and is asked first again when its keys expire:

1. ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``) in the environment;
2. the shared credentials file (``AWS_SHARED_CREDENTIALS_FILE``, else ``~/.aws/credentials``; profile
   ``AWS_PROFILE``, else ``default``);
3. the role of the pod, container or machine (minio's ``IamAwsProvider``), whichever the environment names:

   - a web identity: ``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN`` (EKS IRSA), traded at STS;
   - a container credentials endpoint: ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` (ECS) or
     ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` + ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` (EKS Pod Identity);
   - otherwise the EC2 instance metadata service, IMDSv2 only (a session token is fetched first, there is no v1
     fallback). The standard AWS SDK variables apply: ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (default
     ``http://169.254.169.254``; tests point it at a fake on loopback), ``AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6``,
     ``AWS_EC2_METADATA_DISABLED=true``, ``AWS_METADATA_SERVICE_TIMEOUT`` (seconds, default 1) and
     ``AWS_METADATA_SERVICE_NUM_ATTEMPTS`` (default 1), so that a machine without instance metadata fails in
     about a second instead of hanging.

``MINIO_ACCESS_KEY`` (minio's ``EnvMinioProvider``) is deliberately not read: static keys are
``SPOREPRINT_S3_ACCESS_KEY`` / ``SPOREPRINT_S3_SECRET_KEY``, and a stray MinIO server variable in a container
would silently hand a service the server's root keys.

When nothing answers, the request fails with :class:`NoCredentials`, which names what was tried and why each
failed. The chain is made per process (``ObjectStore.__reduce__`` rebuilds the store from its settings), reads
the environment when it is made, and is safe to share between threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import certifi
import urllib3
from minio.credentials import Credentials
from minio.credentials.providers import AWSConfigProvider, EnvAWSProvider, IamAwsProvider, Provider
from urllib3.exceptions import ConnectTimeoutError, HTTPError, MaxRetryError, NewConnectionError, ReadTimeoutError

from shared.storage import StorageError

IMDS_ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
IMDS_DEFAULT_ENDPOINT = "http://169.254.169.254"
IMDS_IPV6_ENDPOINT = "http://[fd00:ec2::254]"
IMDS_TIMEOUT_VARIABLE = "AWS_METADATA_SERVICE_TIMEOUT"
IMDS_ATTEMPTS_VARIABLE = "AWS_METADATA_SERVICE_NUM_ATTEMPTS"

# STS (web identity) and the container endpoints are real network services: more patience than for IMDS,
# which answers on the machine's own link in milliseconds or not at all.
_ROLE_TIMEOUT = urllib3.Timeout(connect=5, read=10)
_SERVER_ERRORS = (500, 502, 503, 504)

HOW_TO_FIX = ("set SPOREPRINT_S3_ACCESS_KEY and SPOREPRINT_S3_SECRET_KEY (or AWS_ACCESS_KEY_ID and "
              "AWS_SECRET_ACCESS_KEY), or give this machine an instance role (IMDSv2, hop limit 2 for containers), "
              "or the pod an identity (EKS IRSA or Pod Identity)")


class NoCredentials(StorageError):
    """No static keys are set and no source of the AWS credential chain gave any."""


@dataclass(frozen=True)
class Source:
    """One link of the chain: what it is (for the error message) and the provider that asks it."""

    name: str
    provider: Provider | None  # None: switched off (the reason is in the name)


class CredentialChain(Provider):
    """minio ``Provider`` that asks each source in turn, remembers the one that answered, and raises
    :class:`NoCredentials` (not minio's bare "All providers fail") when none does."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)
        self._lock = threading.Lock()
        self._current: Source | None = None
        self._credentials: Credentials | None = None

    def retrieve(self) -> Credentials:
        with self._lock:  # request threads share one store: one of them fetches, the others wait for it
            if self._credentials is not None and not self._credentials.is_expired():
                return self._credentials
            tried: dict[str, str] = {}
            ordered = [self._current] if self._current is not None else []
            ordered += [source for source in self.sources if source is not self._current]
            for source in ordered:
                if source.provider is None:
                    tried[source.name] = source.name
                    continue
                try:
                    credentials = source.provider.retrieve()
                except (ValueError, KeyError, TypeError, OSError, HTTPError) as exc:
                    tried[source.name] = f"{source.name}: {_reason(exc)}"
                    continue
                self._current, self._credentials = source, credentials
                return credentials
            self._current = self._credentials = None
            raise NoCredentials(f"no S3 credentials: {HOW_TO_FIX}. Tried: "
                                + "; ".join(tried[source.name] for source in self.sources))

    @property
    def source(self) -> str | None:
        """The name of the source the current credentials came from (None before the first request)."""
        return self._current.name if self._current is not None else None


class _AwsEnvironment(EnvAWSProvider):
    """minio's ``EnvAWSProvider``, saying "not set" instead of "Access key must not be empty"."""

    def retrieve(self) -> Credentials:
        if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_ACCESS_KEY")):
            raise ValueError("AWS_ACCESS_KEY_ID is not set")
        if not (os.environ.get("AWS_SECRET_ACCESS_KEY") or os.environ.get("AWS_SECRET_KEY")):
            raise ValueError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        return super().retrieve()


def aws_credential_chain() -> CredentialChain:
    """The chain for this process's environment (see the module docstring)."""
    shared_file = AWSConfigProvider()
    shared_file_name = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
    profile = os.environ.get("AWS_PROFILE") or "default"
    return CredentialChain([
        Source("environment (AWS_ACCESS_KEY_ID)", _AwsEnvironment()),
        Source(f"shared credentials file {shared_file_name} [{profile}]", shared_file),
        role_source(),
    ])


def role_source() -> Source:
    """The pod's, container's or instance's role: the branch minio's ``IamAwsProvider`` will take, named."""
    env = os.environ
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        # minio's custom_endpoint would replace the STS address too: never pass the IMDS one here
        return Source(f"web identity {env['AWS_WEB_IDENTITY_TOKEN_FILE']} (role {env.get('AWS_ROLE_ARN', 'unset')})",
                      IamAwsProvider(http_client=_role_http_client()))
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return Source(f"container credentials 169.254.170.2{env['AWS_CONTAINER_CREDENTIALS_RELATIVE_URI']}",
                      IamAwsProvider(http_client=_role_http_client()))
    if env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return Source(f"container credentials {env['AWS_CONTAINER_CREDENTIALS_FULL_URI']}",
                      IamAwsProvider(http_client=_role_http_client()))
    if env.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() == "true":
        return Source("instance metadata: switched off by AWS_EC2_METADATA_DISABLED=true", None)
    endpoint = imds_endpoint()
    timeout = _number(IMDS_TIMEOUT_VARIABLE, 1.0)
    attempts = max(1, int(_number(IMDS_ATTEMPTS_VARIABLE, 1)))
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        retries=urllib3.Retry(total=attempts - 1, backoff_factor=0.2, status_forcelist=_SERVER_ERRORS,
                              raise_on_status=False),
    )
    return Source(f"instance metadata (IMDSv2) at {endpoint}",
                  IamAwsProvider(custom_endpoint=endpoint, http_client=http))


def imds_endpoint() -> str:
    """``AWS_EC2_METADATA_SERVICE_ENDPOINT``, else the IPv4 (or, with ``..._ENDPOINT_MODE=IPv6``, IPv6) address."""
    configured = os.environ.get(IMDS_ENDPOINT_VARIABLE, "").strip()
    if configured:
        return configured.rstrip("/")  # minio appends "/latest/api/token"
    if os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "").strip().lower() == "ipv6":
        return IMDS_IPV6_ENDPOINT
    return IMDS_DEFAULT_ENDPOINT


def _role_http_client() -> urllib3.PoolManager:
    return urllib3.PoolManager(
        timeout=_ROLE_TIMEOUT,
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=_SERVER_ERRORS, raise_on_status=False),
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


def _number(variable: str, default: float) -> float:
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{variable}={value!r} is not a number") from None
    if number <= 0:
        raise ValueError(f"{variable}={value!r} must be positive")
    return number


def _reason(exc: BaseException) -> str:
    """One short line for why a source gave nothing (urllib3's messages embed object reprs and URLs twice)."""
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, NewConnectionError):  # before the timeouts: urllib3 makes it a ConnectTimeoutError too
        return "cannot connect: " + str(exc).rsplit(": ", 1)[-1]
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError) or "timed out" in str(exc):
        return "no answer (timed out)"
    if isinstance(exc, KeyError):
        return f"answer lacks {exc}"
    return str(exc) or type(exc).__name__
