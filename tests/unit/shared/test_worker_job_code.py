"""The worker imports a job's module before RQ forks its work horse (``shared.worker.load_job_code``), so later
horses start with the code loaded; a job whose code cannot be loaded is left to the horse to fail."""

from __future__ import annotations

import sys

import pytest
from redis import Redis
from rq.exceptions import DeserializationError
from rq.job import Job

from shared.queue import JobSerializer
from shared.worker import load_job_code

NOWHERE = Redis(host="127.0.0.1", port=9)  # never contacted: the jobs are built, not saved


def job_of(func: str) -> Job:
    return Job.create(func, connection=NOWHERE, serializer=JobSerializer)


def test_the_jobs_module_is_imported_in_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "json.tool", raising=False)
    load_job_code(job_of("json.tool.main"))
    assert "json.tool" in sys.modules


def test_a_job_whose_code_cannot_be_loaded_is_left_to_the_work_horse() -> None:
    load_job_code(job_of("services.downloader.no_such_jobs.run"))  # no exception: the horse fails the job
    assert "services.downloader.no_such_jobs" not in sys.modules


def test_a_job_whose_data_cannot_be_read_is_left_to_the_work_horse() -> None:
    job = job_of("json.tool.main")
    job.data = b"\x80\x04not json"  # what a planted pickle looks like to the JSON serializer (RQ reads it anew)
    with pytest.raises(DeserializationError):
        job.func_name  # noqa: B018 - what the worker would meet
    load_job_code(job)  # no exception: the horse refuses the job, as the e2e test of planted pickles checks
