"""Redis + RQ: the queues long jobs run on, how a job is put on one, and how it reports progress.

Queue names: ``harvest`` (downloader), ``curate`` (curator), ``train`` (the GPU worker).
Every service does long work one way: its ``jobs.py`` has ``submit_<job>`` (called by a route: puts the job on
its queue through :func:`enqueue`) and ``run_<job>`` (what a worker runs). A job reports progress by saving a
dict under ``job.meta["progress"]`` (:func:`report_progress`); the API reads it back (:func:`job_progress`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date, datetime
from enum import StrEnum
from pathlib import PurePath
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Dependency, Job, JobStatus

from shared.logs import current_request_id
from shared.settings import Settings

logger = logging.getLogger(__name__)


class QueueName(StrEnum):
    harvest = "harvest"
    curate = "curate"
    train = "train"


class JobState(StrEnum):
    """The state of a long job (a harvest, a curation, a training run), one spelling for every service.

    The curator's curations and the trainer's jobs go queued -> running -> completed | failed, and a training
    job may end cancelled. The downloader's harvests use every state: ``interrupted`` (its worker died; resume
    it) and ``cancelling`` (a cancel was asked, the harvest is checkpointing) are its intermediate states.
    """

    queued = "queued"
    running = "running"
    interrupted = "interrupted"
    cancelling = "cancelling"
    cancelled = "cancelled"
    completed = "completed"
    failed = "failed"


# A job in one of these states will not change state again (a client stops polling).
TERMINAL_STATES: frozenset[JobState] = frozenset({JobState.completed, JobState.failed, JobState.cancelled})


# How RQ's job statuses read as job states (a job RQ has not started is queued).
_RQ_STATES = {
    JobStatus.QUEUED: JobState.queued,
    JobStatus.DEFERRED: JobState.queued,
    JobStatus.SCHEDULED: JobState.queued,
    JobStatus.STARTED: JobState.running,
    JobStatus.FINISHED: JobState.completed,
    JobStatus.FAILED: JobState.failed,
    JobStatus.STOPPED: JobState.cancelled,
    JobStatus.CANCELED: JobState.cancelled,
}


def _plain(value: Any) -> Any:
    """What JSON cannot hold natively but jobs report: numpy scalars and arrays, dates, paths, enums."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, PurePath | StrEnum):
        return str(value)
    raise TypeError(f"a job's data must be JSON: {type(value).__name__} is not")


class JobSerializer:
    """How every queue, job, result and job meta is stored in Redis: JSON, which builds no objects.

    RQ's default serializer is pickle, and unpickling runs whatever code a payload names: whoever could write
    to Redis could run code on every worker. JSON gives back only plain data; a payload that is not JSON (a
    pickle planted in a queue) fails to load and never runs.
    """

    @staticmethod
    def dumps(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        return json.dumps(obj, default=_plain).encode("utf-8")

    @staticmethod
    def loads(data: bytes | str, *args: Any, **kwargs: Any) -> Any:
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)


REDIS_USER = "sporeprint"
REDIS_ACL_RULES = "~* &* +@all -@dangerous +info +client|setname +client|getname +client|list +client|id"
"""What the services and workers may do in Redis (an ACL user's rules): every key and channel, every command
but the dangerous ones (FLUSHALL, CONFIG, DEBUG, KEYS, ...), plus the few of those RQ needs (INFO for the
server version, CLIENT SETNAME/GETNAME/LIST/ID for worker names). The local stack, docker-compose and
Kubernetes all create this user with these rules; the default user is switched off."""


def redis_acl(password: str, user: str = REDIS_USER) -> str:
    """A Redis ACL file (``--aclfile``) with only ``user``, holding :data:`REDIS_ACL_RULES` and ``password``."""
    if not password or any(c.isspace() for c in password):
        raise ValueError("a Redis password must be non-empty and contain no whitespace")
    return f"user default off\nuser {user} on >{password} {REDIS_ACL_RULES}\n"


def redis_connection(settings: Settings, timeout_s: float | None = None) -> Redis:
    """A connection as the settings say: the URL (``redis://`` or ``rediss://`` for TLS), with the ACL user and
    password from ``redis_username`` / ``redis_password`` when set (they win over any in the URL).

    ``timeout_s``: connect and read time-outs, and no retry (for callers that must answer quickly, such as a
    metrics scrape); ``None``: redis-py's defaults (wait, as a worker should)."""
    url = settings.redis_url
    options: dict[str, Any] = {}
    if settings.redis_username or settings.redis_password is not None:
        parts = urlsplit(url)  # Redis.from_url lets the URL's user and password win over keyword arguments
        url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
        options["username"] = settings.redis_username or (unquote(parts.username) if parts.username else None)
        options["password"] = (settings.redis_password.get_secret_value() if settings.redis_password is not None
                               else unquote(parts.password) if parts.password else None)
    if settings.redis_ca_file and url.startswith("rediss://"):
        options["ssl_ca_certs"] = settings.redis_ca_file
    if timeout_s is not None:
        options.update(socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=RedisRetry(NoBackoff(), 0))
    return Redis.from_url(url, **options)


def redacted_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: what logs and status pages may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))


def get_queue(name: QueueName, connection: Redis) -> Queue:
    return Queue(name.value, connection=connection, serializer=JobSerializer)


def enqueue(connection: Redis, queue: QueueName, function: Callable[..., Any], *args: Any, job_id: str,
            timeout_s: int | None, keep_s: int, retries: int = 0, meta: dict[str, Any] | None = None,
            description: str | None = None, after: list[str] | None = None) -> Job:
    """Put ``function(*args)`` on ``queue`` as job ``job_id``.

    ``timeout_s``: RQ stops the job after this long (``None``: never, for jobs that checkpoint and resume).
    ``keep_s``: how long its result, or its failure, stays readable. ``retries``: RQ runs a failed job again
    up to this many times (only for jobs that are idempotent). The current request id goes into
    ``meta["request_id"]``: the worker logs the job under it (``shared.worker``). ``after``: ids of jobs this one
    waits for (RQ dependencies); it runs once each has ended, whether it succeeded or, out of retries, failed.
    """
    depends_on = Dependency(jobs=list(after), allow_failure=True) if after else None
    return get_queue(queue, connection).enqueue(
        function, *args, job_id=job_id, job_timeout=-1 if timeout_s is None else timeout_s, result_ttl=keep_s,
        failure_ttl=keep_s, retry=Retry(max=retries) if retries else None, meta=with_request_id(meta),
        description=description, depends_on=depends_on,
    )


def with_request_id(meta: dict[str, Any] | None) -> dict[str, Any]:
    """``meta`` plus the id of the request being handled (if any, and unless ``meta`` names one)."""
    request_id = current_request_id()
    meta = dict(meta or {})
    if request_id is not None:
        meta.setdefault("request_id", request_id)
    return meta


def fetch_job(connection: Redis, job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=connection, serializer=JobSerializer)
    except NoSuchJobError:
        return None


def job_state(job: Job) -> JobState:
    """The job's state from RQ's status, as last read (no round trip)."""
    status = job.get_status(refresh=False)
    return _RQ_STATES.get(status, JobState.queued) if status is not None else JobState.queued


def report_progress(**progress: Any) -> None:
    """Merge ``progress`` into the current RQ job's meta (no-op outside a job, e.g. in tests)."""
    job = get_current_job()
    if job is None:
        return
    job.meta.setdefault("progress", {}).update(progress)
    job.save_meta()  # type: ignore[no-untyped-call]


def job_progress(job: Job) -> dict[str, Any]:
    job.refresh()  # type: ignore[no-untyped-call]
    return dict(job.meta.get("progress", {}))
