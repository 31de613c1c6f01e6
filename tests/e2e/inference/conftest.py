"""A tiny real Keras classifier of fixtureweb species, published to the real S3 store like the trainer does.

The model is trained for a few seconds on synthetic species photos, with outlier exposure on irrelevant
images (herbarium sheets, envelopes, microscopy, labels -> a uniform target). Like a trained model it outputs
logits, has an embedding layer "pool", and comes with open-set artefacts fitted as the training job fits them
(shared/openset.py: a kNN bank of its training photos, the threshold keeping 95% of held-out photos, a
temperature), so /predict answers with the real verdict logic.
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
from shared import openset
from shared.registry import ClassLabel, ModelCard, ModelRegistry, ModelStatus, model_key
from shared.settings import Environment, Settings
from shared.storage import ObjectStore
from sporeprint.processes import ManagedProcess, start_service
from sporeprint.stack import StackState

IMAGE_SIZE = 48
N_CLASSES = 6
CATALOG = SpeciesCatalog(N_CLASSES, seed=0)
MAX_UPLOAD = 2 * 1024 * 1024
MAX_PIXELS = 4_000_000
TRAIN_SEEDS = range(1000, 1040)
OUTLIER_SEEDS = range(1000, 1060)  # photos the model learns from; tests use seeds below 900
VALIDATION_SEEDS = range(900, 915)  # held out from training: the open-set threshold and temperature
MAX_OBSERVATION_PHOTOS = 4


@dataclass(frozen=True)
class FixtureModel:
    path: Path
    classes: list[ClassLabel]
    image_size: int = IMAGE_SIZE
    openset: openset.OpenSetCard | None = None
    bank: Path | None = None


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
    from shared.model_input import photo_to_model_input

    return photo_to_model_input(image, IMAGE_SIZE)


def build_fixture_model(path: Path, train: bool = True, n_outputs: int = N_CLASSES) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(24, 3, strides=2, activation="relu", padding="same")(x)
    x = keras.layers.Conv2D(48, 3, strides=2, activation="relu", padding="same")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(n_outputs, name="logits")(x))
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
        model.compile(optimizer=keras.optimizers.Adam(3e-3),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        model.fit(np.stack(x), np.stack(y).astype(np.float32), epochs=35, batch_size=32, verbose=0, shuffle=True)
    model.save(path)
    return path


def fit_open_set(model_path: Path, bank_path: Path) -> openset.OpenSetCard:
    """What the training job fits (services/trainer/evaluation.py, its defaults): a Mahalanobis novelty scorer on
    training photos, threshold at 95% retention of held-out photos, temperature and uncertain_below on them."""
    import keras

    both = openset.embedding_model(keras.models.load_model(model_path, compile=False))

    def read(seeds: range) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.stack([_as_input(species_photo(i, seed, 128)) for i in range(N_CLASSES) for seed in seeds])
        features, logits = (np.asarray(t) for t in both(x, training=False))
        return features, logits, np.repeat(np.arange(N_CLASSES), len(seeds))

    train_features, _, train_labels = read(TRAIN_SEEDS)
    val_features, val_logits, val_labels = read(VALIDATION_SEEDS)
    from services.trainer.evaluation import fit_openset
    from shared.training import OpenSetConfig

    fit = fit_openset(train_features, train_labels, val_features, val_logits, val_labels, OpenSetConfig(),
                      fitted_on="fixture species, seeds 900-914")
    fit.scorer.save(bank_path)
    return fit.card


def publish_model(store: ObjectStore, model_id: str, model_file: Path | bytes, classes: list[ClassLabel],
                  image_size: int = IMAGE_SIZE, promote: bool = True, metrics: dict[str, float] | None = None,
                  open_set: openset.OpenSetCard | None = None, bank: Path | None = None) -> ModelCard:
    """Upload ``model.keras`` (logits out), its open-set bank and its card as the trainer does, then (optionally)
    promote it."""
    key = model_key(model_id, "model.keras")
    if isinstance(model_file, bytes):
        store.put_bytes(key, model_file)
    else:
        store.put_file(key, model_file)
    if bank is not None:
        store.put_file(model_key(model_id, "openset.npz"), bank)
    card = ModelCard(
        model_id=model_id, status=ModelStatus.complete, created_at=datetime.now(UTC), dataset="fixture-species",
        manifest_version=3, backbone="tiny-cnn", image_size=image_size, classes=classes,
        metrics=metrics or {"top1": 0.9, "top3": 1.0, "macro_f1": 0.88}, output="logits", openset=open_set,
        artifacts=["model.keras", "card.json"] + (["openset.npz"] if bank is not None else []),
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

    source = (inspect.getsource(build_fixture_model) + inspect.getsource(_as_input) + inspect.getsource(fit_open_set)
              + tf.__version__)
    key = hashlib.sha256(f"{source}{TRAIN_SEEDS}{OUTLIER_SEEDS}{IMAGE_SIZE}".encode()).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    directory = cache.mkdir("inference-fixture-model") if cache else request.getfixturevalue(
        "tmp_path_factory").mktemp("inference-fixture-model")
    path = directory / f"{key}.keras"
    if not path.exists():
        partial = path.with_suffix(".partial.keras")
        build_fixture_model(partial)
        partial.replace(path)
    bank = path.with_suffix(".npz")
    return FixtureModel(path, class_labels(), openset=fit_open_set(path, bank), bank=bank)


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
        publish_model(store, model_id, model.path, model.classes, open_set=model.openset, bank=model.bank)
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
        "SPOREPRINT_INFERENCE_MAX_OBSERVATION_PHOTOS": str(MAX_OBSERVATION_PHOTOS),
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

    def __init__(self, model: FixtureModel) -> None:
        import keras

        assert model.openset is not None and model.bank is not None
        self.card = model.openset
        self.model = openset.embedding_model(keras.models.load_model(model.path, compile=False))
        self.scorer = openset.load_scorer(model.bank)

    def _read(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        from services.inference.images import decode_for_model

        image, _ = decode_for_model(data, IMAGE_SIZE, 10**9, 10**9)
        features, logits = self.model(image[None], training=False)
        return np.asarray(features), np.asarray(logits)

    def logits(self, data: bytes) -> np.ndarray:
        """Uncalibrated, one row: what an observation's photos are combined on."""
        return self._read(data)[1][0]

    def probabilities(self, data: bytes) -> np.ndarray:
        """Calibrated, as served: softmax(logits / temperature)."""
        return openset.softmax(self._read(data)[1], self.card.temperature)[0]

    def ood(self, data: bytes) -> float:
        """Novelty score over the fitted threshold (> 1: unlike every class)."""
        return float(self.scorer.score(self._read(data)[0])[0] / self.card.threshold)


@pytest.fixture(scope="session")
def reference(fixture_model: FixtureModel) -> Reference:
    return Reference(fixture_model)
