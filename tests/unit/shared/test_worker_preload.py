"""``python -m shared.worker --preload MODULE``: a module that cannot be imported is a usage error naming it,
before the worker connects to Redis (the e2e harvest tests run workers that preload the real job modules)."""

from __future__ import annotations

import sys

import pytest

from shared.worker import main


def test_an_unknown_preload_module_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["harvest", "--preload", "services.downloader.no_such_jobs"])
    assert exited.value.code == 2
    assert "--preload services.downloader.no_such_jobs: No module named" in capsys.readouterr().err


def test_a_preloaded_module_is_imported_before_the_worker_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.worker

    started: list[bool] = []

    def instead_of_redis(settings: object) -> object:  # the first thing after the preloads
        started.append("json.tool" in sys.modules)
        raise SystemExit(0)

    monkeypatch.delitem(sys.modules, "json.tool", raising=False)
    monkeypatch.setattr(shared.worker, "redis_connection", instead_of_redis)
    with pytest.raises(SystemExit):
        main(["harvest", "--preload", "json.tool"])
    assert started == [True]
