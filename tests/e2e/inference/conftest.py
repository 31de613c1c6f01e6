"""A tiny real Keras classifier of fixtureweb species, published to the real S3 store like the trainer does.

The model is trained for a few seconds on synthetic species photos, with outlier exposure on irrelevant
images (herbarium sheets, envelopes, microscopy, labels -> a uniform target), so that its answers are
meaningful: species photos get a confident class, irrelevant images a spread-out (high entropy) answer.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from fixtureweb.config import preset
from fixtureweb.irrelevant import IrrelevantKind, render_irrelevant
from fixtureweb.species import SpeciesCatalog
from fixtureweb.web import FixtureWeb, FixtureWebInfo
from shared.processes import ManagedProcess, start_service
from shared.registry import ClassLabel, ModelCard, ModelRegistry, ModelStatus, model_key
from shared.settings import Environment, Settings
from shared.stack import StackState
from shared.storage import ObjectStore

IMAGE_SIZE = 48
N_CLASSES = 6
CATALOG = SpeciesCatalog(N_CLASSES, seed=0)
MAX_UPLOAD = 2 * 1024 * 1024
MAX_PIXELS = 4_000_000
TRAIN_SEEDS = range(1000, 1040)
OUTLIER_SEEDS = range(1000, 1060)  # photos the model learns from; tests use seeds below 1000


@dataclass(frozen=True)
class FixtureModel:
    path: Path
    classes: list[ClassLabel]
    image_size: int = IMAGE_SIZE


def class_labels() -> list[ClassLabel]:
    return [
        ClassLabel(index=sp.index, name=sp.name, species=sp.name, genus=sp.genus.name, family=sp.family)
        for sp in CATALOG.species
    ]


def species_photo(index: int, seed: int, size: int = 160) -> Image.Image:
    return CATALOG.render(index, seed, size)


def irrelevant_photo(seed: int, kind: IrrelevantKind = IrrelevantKind.HERBARIUM_SHEET, size: int = 160) -> Image.Image:
    return render_irrelevant(kind, seed, size)


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _as_input(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR), np.float32)


def build_fixture_model(path: Path, train: bool = True, n_outputs: int = N_CLASSES) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
        keras.layers.Rescaling(1 / 127.5, offset=-1),
        keras.layers.Conv2D(24, 3, strides=2, activation="relu", padding="same"),
        keras.layers.Conv2D(48, 3, strides=2, activation="relu", padding="same"),
        keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(n_outputs, activation="softmax"),
    ])
    if train:
        x, y = [], []
        for index in range(N_CLASSES):
            for seed in TRAIN_SEEDS:
                x.append(_as_input(species_photo(index, seed, 128)))
                y.append(np.eye(N_CLASSES)[index])
        kinds = list(IrrelevantKind)
        for seed in OUTLIER_SEEDS:
            x.append(_as_input(irrelevant_photo(seed, kinds[seed % len(kinds)], 128)))
            y.append(np.full(N_CLASSES, 1 / N_CLASSES))  # outlier exposure: "no idea" on non-photos
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="categorical_crossentropy")
        model.fit(np.stack(x), np.stack(y).astype(np.float32), epochs=35, batch_size=32, verbose=0, shuffle=True)
    model.save(path)
    return path


def publish_model(store: ObjectStore, model_id: str, model_file: Path | bytes, classes: list[ClassLabel],
                  image_size: int = IMAGE_SIZE, promote: bool = True, metrics: dict[str, float] | None = None,
                  ) -> ModelCard:
    """Upload ``model.keras`` and its card as the trainer does, then (optionally) promote it."""
    key = model_key(model_id, "model.keras")
    if isinstance(model_file, bytes):
        store.put_bytes(key, model_file)
    else:
        store.put_file(key, model_file)
    card = ModelCard(
        model_id=model_id, status=ModelStatus.complete, created_at=datetime.now(UTC), dataset="fixture-species",
        manifest_version=3, backbone="tiny-cnn", image_size=image_size, classes=classes,
        metrics=metrics or {"top1": 0.9, "top3": 1.0, "macro_f1": 0.88}, artifacts=["model.keras", "card.json"],
    )
    registry = ModelRegistry(store)
    registry.save_card(card)
    if promote:
        registry.promote(model_id, by="tests")
    return card


@pytest.fixture(scope="session")
def fixture_model(request: pytest.FixtureRequest) -> FixtureModel:
    """Trained once, then kept in pytest's cache: the build is deterministic, keyed by its own source."""
    import hashlib
    import inspect

    import tensorflow as tf

    source = inspect.getsource(build_fixture_model) + inspect.getsource(_as_input) + tf.__version__
    key = hashlib.sha256(f"{source}{TRAIN_SEEDS}{OUTLIER_SEEDS}{IMAGE_SIZE}".encode()).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    directory = cache.mkdir("inference-fixture-model") if cache else request.getfixturevalue(
        "tmp_path_factory").mktemp("inference-fixture-model")
    path = directory / f"{key}.keras"
    if not path.exists():
        partial = path.with_suffix(".partial.keras")
        build_fixture_model(partial)
        partial.replace(path)
    return FixtureModel(path, class_labels())


@pytest.fixture(scope="session")
def wrong_shape_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Loads fine, but answers 3 classes where its card promises 6: the smoke prediction must refuse it."""
    return build_fixture_model(tmp_path_factory.mktemp("bad") / "model.keras", train=False, n_outputs=3)


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def served_model_id(url: str) -> str | None:
    response = httpx.get(f"{url}/ready", timeout=5)
    return response.json().get("model_id") if response.status_code == 200 else None


INFERENCE_APP = "services.inference.main:app"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


def stack_settings(stack: StackState) -> Settings:
    """Settings with a bucket of their own on the session's S3 server (like the root ``settings`` fixture)."""
    return Settings(
        environment=Environment.test, s3_endpoint=stack.s3_endpoint, s3_access_key=stack.access_key,
        s3_secret_key=stack.secret_key, s3_bucket=f"inf-{uuid.uuid4().hex[:12]}", redis_url=stack.redis_url,
        api_token="inference-" + uuid.uuid4().hex,
    )


def settings_environment(settings: Settings) -> dict[str, str]:
    return {f"SPOREPRINT_{name.upper()}": str(value)
            for name, value in settings.model_dump(mode="json").items() if value is not None}


@dataclass
class Served:
    """The inference service under uvicorn, with the store it loads from."""

    service: ManagedProcess
    store: ObjectStore

    @property
    def url(self) -> str:
        return self.service.url


def start_inference(stack: StackState, log_dir: Path, extra_env: dict[str, str],
                    model: FixtureModel | None = None, model_id: str = "fixture-a") -> Served:
    settings = stack_settings(stack)
    store = ObjectStore.from_settings(settings)
    store.ensure_bucket()
    if model is not None:
        publish_model(store, model_id, model.path, model.classes)
    service = start_service("inference", INFERENCE_APP, {**settings_environment(settings), **extra_env}, log_dir)
    if model is not None:
        try:
            wait_until(lambda: served_model_id(service.url) == model_id, what=f"{model_id} to serve")
        except AssertionError:
            service.stop()
            raise AssertionError(f"the service never served {model_id}:\n{service.log_tail()}") from None
    return Served(service, store)


@pytest.fixture(scope="session")
def served(stack: StackState, fixture_model: FixtureModel, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    """One inference service for the session (starting TensorFlow costs seconds), serving the fixture model."""
    env = {
        "SPOREPRINT_INFERENCE_POLL_INTERVAL_S": "0.3",
        "SPOREPRINT_INFERENCE_ALLOW_LOOPBACK_URLS": "true",
        "SPOREPRINT_INFERENCE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
        "SPOREPRINT_INFERENCE_MAX_PIXELS": str(MAX_PIXELS),
        "SPOREPRINT_INFERENCE_MAX_BATCH_FILES": "8",
        "SPOREPRINT_INFERENCE_URL_TIMEOUT_S": "5",
    }
    running = start_inference(stack, tmp_path_factory.mktemp("logs"), env, fixture_model)
    try:
        yield running
    finally:
        running.service.stop()


@pytest.fixture(scope="session")
def fixture_web() -> Iterator[FixtureWebInfo]:
    with FixtureWeb(preset(2, 0, n_classes=N_CLASSES, faults=False, latency_ms=1.0)) as web:
        yield web.info


class Reference:
    """The fixture model run in the test process, on exactly the service's decoding: the expected answers."""

    def __init__(self, model_path: Path) -> None:
        import keras

        self.model = keras.models.load_model(model_path, compile=False)

    def probabilities(self, data: bytes) -> np.ndarray:
        from services.inference.core.images import decode_for_model

        image, _ = decode_for_model(data, IMAGE_SIZE, 10**9, 10**9)
        return np.asarray(self.model(image[None], training=False))[0]

    def ood(self, data: bytes) -> float:
        from services.inference.core.answers import ood_score

        return ood_score(self.probabilities(data))


@pytest.fixture(scope="session")
def reference(fixture_model: FixtureModel) -> Reference:
    return Reference(fixture_model.path)
