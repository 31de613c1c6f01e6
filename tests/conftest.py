"""Session fixtures: the real local stack (SeaweedFS S3 + Redis) on free ports, and helpers
to run services under uvicorn and RQ workers as processes against it.

No S3 mock anywhere: storage tests talk to the real S3 server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.manifests import ManifestStore
from shared.settings import Environment, Settings, get_settings
from shared.storage import ObjectStore
from sporeprint.processes import ManagedProcess, start_service, start_worker
from sporeprint.stack import LocalStack, StackState

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"  # optional evaluation data beside the repository
GBIF_SAMPLE = ROOT / "data" / "samples" / "gbif" / "multimedia_psilocybe_semilanceata.txt"
REAL_PHOTOS = FIXTURES / "realphotos"  # optional: real photos for evaluation only (its README)
TEST_TOKEN = "test-token-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def gbif_sample() -> Path:
    if not GBIF_SAMPLE.exists():  # committed to the repository
        pytest.fail(f"the real GBIF sample is missing: {GBIF_SAMPLE}")
    return GBIF_SAMPLE


@pytest.fixture(scope="session")
def real_photos() -> Path:
    """The shared real photos (``labels.jsonl`` + folders); tests that need them skip, saying so, without them."""
    if not (REAL_PHOTOS / "labels.jsonl").exists():
        pytest.skip(f"the optional real photos are not present at {REAL_PHOTOS} (evaluation data, not in the repo)")
    return REAL_PHOTOS


@pytest.fixture(scope="session")
def relevance_gate(tmp_path_factory: pytest.TempPathFactory) -> object:
    """The shared relevance gate with the real pretrained weights, converted once per test session."""
    from shared.relevance.gate import load_gate

    return load_gate("efficientnet_lite0", tmp_path_factory.mktemp("work"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    local = LocalStack(tmp_path_factory.mktemp("stack"))
    state = local.up()
    try:
        yield state
    finally:
        local.down(clean=True)


def make_settings(stack: StackState, bucket: str) -> Settings:
    return Settings(
        environment=Environment.test,
        s3_endpoint=stack.s3_endpoint,
        s3_access_key=stack.access_key,
        s3_secret_key=stack.secret_key,
        s3_bucket=bucket,
        redis_url=stack.redis_url,
        api_token=TEST_TOKEN,
    )


@pytest.fixture
def settings(stack: StackState) -> Settings:
    """Settings for one test: its own bucket on the shared S3 server."""
    return make_settings(stack, f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(settings: Settings) -> ObjectStore:
    store = ObjectStore.from_settings(settings)
    store.ensure_bucket()
    return store


@pytest.fixture
def manifests(store: ObjectStore) -> ManifestStore:
    return ManifestStore(store)


def settings_env(settings: Settings) -> dict[str, str]:
    """The SPOREPRINT_* environment that makes a child process see ``settings``."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):  # dumped as "**********"
            value = secret.get_secret_value()
        if value is not None:
            env[f"SPOREPRINT_{name.upper()}"] = str(value)
    return env


@pytest.fixture
def override_settings() -> Iterator[Callable[[object, Settings], None]]:
    """Make a FastAPI app see ``settings`` through its get_settings dependency."""
    apps: list[object] = []

    def apply(app: object, settings: Settings) -> None:
        app.dependency_overrides[get_settings] = lambda: settings  # type: ignore[attr-defined]
        apps.append(app)

    yield apply
    for app in apps:
        app.dependency_overrides.clear()  # type: ignore[attr-defined]


@pytest.fixture
def run_service(tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """Start ``module:app`` under uvicorn with the given settings; stopped by PID at teardown."""
    started: list[ManagedProcess] = []

    def start(name: str, app: str, settings: Settings, extra_env: dict[str, str] | None = None) -> ManagedProcess:
        env = {**settings_env(settings), **(extra_env or {})}
        service = start_service(name, app, env, tmp_path / "logs")
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        service.stop()


@pytest.fixture
def run_worker(tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """Start an RQ worker process on the given queues; stopped by PID at teardown."""
    started: list[ManagedProcess] = []

    def start(
        name: str, queues: list[str], settings: Settings, extra_env: dict[str, str] | None = None
    ) -> ManagedProcess:
        env = {**settings_env(settings), **(extra_env or {})}
        worker = start_worker(name, queues, env, tmp_path / "logs")
        started.append(worker)
        return worker

    yield start
    for worker in reversed(started):
        worker.stop()
