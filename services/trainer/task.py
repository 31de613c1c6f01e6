"""One training run: plan -> cache -> tf.data -> model -> fit (head, then fine-tuning) -> open set -> evaluate
-> registry.

Shaped like a tensorflow/models task (build_inputs, build_model, fit, evaluate), with a thin entry point
(``services.trainer.jobs.run_training``). Every epoch the full model (weights + optimizer state) and a
small state file go to ``models/<id>/checkpoint/``; a run that finds them resumes after the last finished
epoch, so a killed worker costs at most one epoch.

After training, the open-set step embeds the train split (no augmentation, no shuffling) into the kNN bank and
fits the temperature and thresholds on the validation split (``evaluation.fit_openset``); only then is the test
split read, to report. Model choice (best epoch, auto-promotion, sweep winners) uses validation figures only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from services.trainer import evaluation
from services.trainer.core.config import get_trainer_settings
from services.trainer.dataset import DatasetPlan, load_plan
from services.trainer.input import finish_split
from services.trainer.model import build_model, compile_model, unfreeze_for_fine_tuning
from services.trainer.multiworker import ClusterRole, cluster_role
from services.trainer.promotion import maybe_auto_promote
from services.trainer.schedule import LearningRateController, PhaseCurve, PlateauState, fine_tune_peak, improved, scalar
from services.trainer.sources import InputSource, open_input
from shared import openset
from shared.manifests import ManifestStore
from shared.registry import ModelCard, ModelRegistry, ModelStatus, model_key
from shared.storage import ObjectNotFound, ObjectStore
from shared.training import DistributionStrategy, TrainingJobSpec

logger = logging.getLogger(__name__)

Progress = Callable[..., None]
CancelCheck = Callable[[], bool]
EpochHook = Callable[[dict[str, Any], float, int], None]  # (history row, epoch seconds, training images)

PHASE_HEAD = "head"
PHASE_FINE_TUNE = "fine_tune"
PHASE_DONE = "done"

# card.metrics: validation figures (model choice) first, then test figures (reported only)
SUMMARY_METRICS = ("val_top1", "val_ece", "top1", "top3", "top5", "macro_f1", "test_ece", "test_novelty_retained",
                   "val_obs_top1", "obs_top1", "obs_top5", "obs_novelty_retained")


class JobCanceled(RuntimeError):
    pass


class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy as Keras 3's ``fit`` calls it (keras-team/keras#20585): Keras reduces a whole
    batch structure at once (tf.distribute documents nested values; the collective strategy takes one tensor)
    and reduces scalar logs along ``axis=0``. Both become what they mean: each value alone, scalars whole."""

    def reduce(self, reduce_op: Any, value: Any, axis: int | None = None) -> Any:
        reduce_one = super().reduce

        def one(item: Any) -> Any:
            local = self.experimental_local_results(item)[0] if isinstance(
                item, tf.distribute.DistributedValues) else item
            scalar = tf.convert_to_tensor(local).shape.rank == 0
            return reduce_one(reduce_op, item, None if scalar else axis)

        return tf.nest.map_structure(one, value)


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "default"


def make_strategy(distribution: DistributionStrategy) -> tf.distribute.Strategy:
    """``mirrored``: every GPU of this host, or of every worker when TF_CONFIG names a cluster
    (MultiWorkerMirroredStrategy: create it before any other TensorFlow op runs); ``default``: one device."""
    role = cluster_role()
    if distribution is DistributionStrategy.mirrored:
        if role is not None:
            return MultiWorkerStrategy()
        return tf.distribute.MirroredStrategy()
    if role is not None:
        raise ValueError(f"TF_CONFIG names a cluster of {role.workers} workers, but the spec's distribution is "
                         f"'{distribution.value}': use 'mirrored'")
    return tf.distribute.get_strategy()


@dataclass
class TrainingState:
    """What survives a crash (``checkpoint/state.json``): where the run is and what it has learnt so far.

    A state.json written before a field existed still loads (every field has a default)."""

    phase: str = PHASE_HEAD
    epoch: int = 0  # epochs finished, both phases together
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_accuracy: float = -1.0  # of the kept weights (best epoch)
    best_val_loss: float | None = None  # of the kept weights: breaks ties of val_accuracy
    best_epoch: int | None = None
    monitor_best: float | None = None  # EarlyStopping's best value of callbacks.monitor in this phase
    wait: int = 0  # epochs without improvement of callbacks.monitor (EarlyStopping)
    plateau: PlateauState = field(default_factory=PlateauState)  # ReduceLROnPlateau, this phase
    fine_tune_start: int | None = None
    fine_tune_learning_rate: float | None = None  # the fine-tuning peak as used (capped by the head's rate)
    epoch_seconds: list[float] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.plateau, dict):
            self.plateau = PlateauState(**self.plateau)

    def kept_weights_improved(self, val_accuracy: float, val_loss: float | None) -> bool:
        """ModelCheckpoint's choice: higher val_accuracy, or the same with a lower val_loss (on a small
        validation split many epochs tie on accuracy; the lower loss is the better calibrated of them)."""
        if val_accuracy != self.best_val_accuracy:
            return val_accuracy > self.best_val_accuracy
        return val_loss is not None and (self.best_val_loss is None or val_loss < self.best_val_loss)


class Checkpoints:
    """``models/<id>/checkpoint/``: last.keras (model + optimizer), best.weights.h5 and state.json.

    A multi-worker job's other workers are no writers: they save into their local (temporary) directory only,
    because every worker must save (reading mirrored variables is collective), and read the chief's to resume.
    """

    def __init__(self, store: ObjectStore, model_id: str, local_dir: Path, writer: bool = True) -> None:
        self.store = store
        self.model_id = model_id
        self.dir = local_dir
        self.writer = writer
        self.dir.mkdir(parents=True, exist_ok=True)

    def key(self, name: str) -> str:
        return model_key(self.model_id, f"checkpoint/{name}")

    @property
    def last_path(self) -> Path:
        return self.dir / "last.keras"

    @property
    def best_path(self) -> Path:
        return self.dir / "best.weights.h5"

    def load(self) -> TrainingState | None:
        try:
            raw = self.store.get_json(self.key("state.json"))
            self.store.get_file(self.key("last.keras"), self.last_path)
            if raw.get("best_epoch") is not None:
                self.store.get_file(self.key("best.weights.h5"), self.best_path)
        except ObjectNotFound:
            return None
        return TrainingState(**raw)

    def save(self, model: keras.Model, state: TrainingState, improved: bool) -> None:
        model.save(self.last_path)
        if improved:
            model.save_weights(self.best_path)
        if not self.writer:
            return
        self.store.put_file(self.key("last.keras"), self.last_path)
        if improved:
            self.store.put_file(self.key("best.weights.h5"), self.best_path)
        # The state goes last: it never names an epoch whose model is not stored yet.
        self.store.put_json(self.key("state.json"), asdict(state))

    def clear(self) -> None:
        if not self.writer:
            return
        for key in list(self.store.list(model_key(self.model_id, "checkpoint/"))):
            self.store.delete(key)


class EpochBookkeeper(keras.callbacks.Callback):
    """History, best-epoch tracking (ModelCheckpoint on val_accuracy, ties on val_loss), EarlyStopping (on
    callbacks.monitor), checkpoint upload, progress and cancellation, all in one place so that all of it survives
    a resume. Runs after the LearningRateController, so the saved state has this epoch's plateau counters."""

    def __init__(self, run: TrainingRun, phase_end: int) -> None:
        super().__init__()
        self.run = run
        self.phase_end = phase_end
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        state, spec = self.run.state, self.run.spec
        row: dict[str, Any] = {"epoch": epoch + 1, "phase": state.phase,
                               **{name: float(value) for name, value in (logs or {}).items()}}
        row["learning_rate"] = scalar(self.model.optimizer.learning_rate)
        state.history.append(row)
        state.epoch = epoch + 1
        state.epoch_seconds.append(time.monotonic() - self.started)
        val_accuracy = float(row.get("val_accuracy", 0.0))
        val_loss = float(row["val_loss"]) if "val_loss" in row else None
        keep = state.kept_weights_improved(val_accuracy, val_loss)
        if keep:
            state.best_val_accuracy, state.best_val_loss, state.best_epoch = val_accuracy, val_loss, epoch + 1
        callbacks = spec.callbacks
        value = row.get(callbacks.monitor)
        if value is not None and improved(value, state.monitor_best, callbacks.monitor, callbacks.min_delta):
            state.monitor_best, state.wait = value, 0
        else:
            state.wait += 1
        if callbacks.early_stopping.enabled and state.wait >= callbacks.early_stopping.patience:
            logger.info("early stopping after epoch %d (%s has not improved for %d epochs; kept weights: epoch %s, "
                        "val_accuracy %.4f)", epoch + 1, callbacks.monitor, state.wait, state.best_epoch,
                        state.best_val_accuracy)
            self.model.stop_training = True
        self.run.checkpoints.save(self.model, state, keep)
        logger.info("epoch %d/%d %s", epoch + 1, self.run.total_epochs,
                    " ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
        self.run.report_epoch(row)
        if self.run.cancel_requested():
            raise JobCanceled("canceled by request")


class TrainingRun:
    def __init__(
        self,
        spec: TrainingJobSpec,
        model_id: str,
        store: ObjectStore,
        work_dir: Path,
        progress: Progress | None = None,
        cancel_requested: CancelCheck | None = None,
        job_id: str | None = None,
        on_epoch: EpochHook | None = None,
        strategy: tf.distribute.Strategy | None = None,
    ) -> None:
        if spec.data.manifest_version is None:
            raise ValueError("the spec's manifest version must be pinned before training")
        self.spec = resolve_mixed_precision(spec)
        self.model_id = model_id
        self.job_id = job_id
        self.store = store
        self.registry = ModelRegistry(store)
        self.work_dir = work_dir
        self.local = work_dir / "trainer" / store.bucket / model_id
        self.progress: Progress = progress or (lambda **_: None)
        self.cancel_requested: CancelCheck = cancel_requested or (lambda: False)
        self.on_epoch: EpochHook = on_epoch or (lambda row, seconds, images: None)
        self.checkpoints = Checkpoints(store, model_id, self.local / "checkpoint")
        self.state = TrainingState()
        self.plan: DatasetPlan | None = None
        self.input: InputSource | None = None
        self.created_at = datetime.now(UTC)
        self.strategy = strategy  # None: made from spec.distribution when training starts
        self.role: ClusterRole | None = None  # set for a multi-worker strategy (TF_CONFIG)

    @property
    def total_epochs(self) -> int:
        return self.spec.epochs + (self.spec.fine_tune.epochs if self.spec.fine_tuning else 0)

    # --- progress -------------------------------------------------------------------------------------
    def report_epoch(self, row: dict[str, Any]) -> None:
        recent = self.state.epoch_seconds[-3:]
        eta = (sum(recent) / len(recent)) * max(0, self.total_epochs - self.state.epoch) if recent else None
        self.progress(stage=self.state.phase, epoch=self.state.epoch, epochs=self.total_epochs,
                      history=self.state.history, eta_seconds=eta, best_val_accuracy=self.state.best_val_accuracy,
                      best_epoch=self.state.best_epoch)
        self.on_epoch(row, self.state.epoch_seconds[-1], len(self.plan.splits["train"]) if self.plan else 0)

    # --- the task ---------------------------------------------------------------------------------------
    def build_inputs(self) -> dict[str, tf.data.Dataset]:
        manifests = ManifestStore(self.store)
        self.progress(stage="planning")
        self.plan = plan = load_plan(manifests, self.spec.data)
        self.input = open_input(self.spec, plan, self.store, self.work_dir, self.global_batch_size,
                                get_trainer_settings(), self.progress)
        return {split: self.split_dataset(split, training=split == "train") for split in plan.splits}

    def split_dataset(self, split: str, training: bool) -> tf.data.Dataset:
        assert self.input is not None and self.plan is not None
        return finish_split(self.input.dataset(split, training=training), self.spec, len(self.plan.classes),
                            training, self.soft_labels)

    @property
    def soft_labels(self) -> bool:
        """One-hot labels and categorical cross-entropy: label smoothing and MixUp/CutMix need them."""
        return bool(self.spec.label_smoothing or self.spec.augmentation.mixing)

    @property
    def steps_per_epoch(self) -> int:
        assert self.plan is not None
        return max(1, -(-len(self.plan.splits["train"]) // self.global_batch_size))

    def class_weights(self) -> dict[int, float] | None:
        if self.spec.class_weights == "none" or self.plan is None:
            return None
        labels = np.array([e.label for e in self.plan.splits["train"]])
        counts = np.bincount(labels, minlength=len(self.plan.classes))
        return {index: float(len(labels) / (len(counts) * count)) if count else 0.0
                for index, count in enumerate(counts)}

    # --- distribution -----------------------------------------------------------------------------------
    def _strategy(self) -> tf.distribute.Strategy:
        if self.strategy is None:
            self.strategy = make_strategy(self.spec.distribution)
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy) and self.role is None:
            self.role = cluster_role()
            if self.role is not None and not self.role.is_chief:
                scratch = Path(tempfile.mkdtemp(prefix=f"{self.model_id}-worker-", dir=self.work_dir))
                self.checkpoints = Checkpoints(self.store, self.model_id, scratch, writer=False)
        return self.strategy

    @property
    def is_chief(self) -> bool:
        """Writes checkpoints, the model and its card: always, but on a multi-worker job's other workers."""
        self._strategy()
        return self.role is None or self.role.is_chief

    @property
    def replicas(self) -> int:
        return int(self._strategy().num_replicas_in_sync)

    @property
    def global_batch_size(self) -> int:
        """spec.batch_size per replica: Keras splits each dataset batch over the replicas in sync."""
        return self.spec.batch_size * self.replicas

    def scaled_learning_rate(self, learning_rate: float) -> float:
        """The linear scaling rule (Goyal et al. 2017): a global batch N times larger takes N times the rate."""
        return learning_rate * self.replicas

    def distribution(self) -> dict[str, Any]:
        """What trained the model (distribution.json): strategy, replicas, workers, batch and rates as used."""
        spec = self.spec
        return {
            "strategy": strategy_name(self._strategy()), "replicas_in_sync": self.replicas,
            "workers": self.role.workers if self.role else 1,
            "per_replica_batch_size": spec.batch_size, "global_batch_size": self.global_batch_size,
            "learning_rate": self.scaled_learning_rate(spec.optimizer.learning_rate),
            "fine_tune_learning_rate": (self.state.fine_tune_learning_rate
                                        or self.scaled_learning_rate(spec.fine_tune.learning_rate))
            if spec.fine_tuning else None,
        }

    def phase_curve(self) -> PhaseCurve:
        """This phase's learning-rate curve (the head's, or fine-tuning's from its capped peak)."""
        spec = self.spec
        if self.state.phase == PHASE_FINE_TUNE:
            assert self.state.fine_tune_learning_rate is not None
            return PhaseCurve.for_phase(spec.optimizer, self.state.fine_tune_learning_rate, spec.fine_tune.epochs,
                                        self.steps_per_epoch)
        return PhaseCurve.for_phase(spec.optimizer, self.scaled_learning_rate(spec.optimizer.learning_rate),
                                    spec.epochs, self.steps_per_epoch)

    def _callbacks(self, phase_end: int) -> list[keras.callbacks.Callback]:
        # The controller first: the bookkeeper saves the state with this epoch's plateau counters.
        return [LearningRateController(self.phase_curve(), self.state.plateau, self.spec.callbacks),
                EpochBookkeeper(self, phase_end)]

    def _fit(self, model: keras.Model, datasets: dict[str, tf.data.Dataset], until: int) -> None:
        if self.state.epoch >= until:
            return
        model.fit(datasets["train"], validation_data=datasets["validation"], initial_epoch=self.state.epoch,
                  epochs=until, callbacks=self._callbacks(until), class_weight=self.class_weights(), verbose=0,
                  shuffle=False)  # the tf.data pipeline shuffles; Keras would ignore True with a warning per fit

    def _compile(self, model: keras.Model, learning_rate: float) -> None:
        spec = self.spec
        compile_model(model, spec.optimizer.name, learning_rate, spec.jit_compile,
                      weight_decay=spec.optimizer.weight_decay, label_smoothing=spec.label_smoothing,
                      soft_labels=self.soft_labels)

    def _start_fine_tuning(self, model: keras.Model) -> None:
        spec, state = self.spec, self.state
        self._restore_best(model)
        unfrozen = unfreeze_for_fine_tuning(model, spec.fine_tune.unfreeze_layers)
        state.fine_tune_learning_rate = fine_tune_peak(
            self.scaled_learning_rate(spec.fine_tune.learning_rate),
            self.scaled_learning_rate(spec.optimizer.learning_rate), state.plateau)
        logger.info("fine-tuning: %d backbone layers unfrozen, peak lr %g", unfrozen, state.fine_tune_learning_rate)
        self._compile(model, state.fine_tune_learning_rate)
        # A new phase: EarlyStopping and ReduceLROnPlateau start counting afresh.
        state.fine_tune_start, state.wait, state.monitor_best = state.epoch, 0, None
        state.plateau = PlateauState()

    def train(self) -> keras.Model:
        spec = self.spec
        # Set every run: a worker process runs many jobs, and the policy is global.
        keras.mixed_precision.set_global_policy("mixed_float16" if spec.mixed_precision else "float32")
        if spec.deterministic:
            # Process-wide and irreversible: later jobs of this worker run deterministic ops too (slower).
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(spec.seed)
        strategy = self._strategy()
        logger.info("distribution: %s, %d replicas in sync%s, global batch %d, learning rate %g",
                    strategy_name(strategy), self.replicas, f", {self.role.describe()}" if self.role else "",
                    self.global_batch_size, self.scaled_learning_rate(spec.optimizer.learning_rate))
        datasets = self.build_inputs()
        assert self.plan is not None
        resumed = self.checkpoints.load()
        with strategy.scope():
            if resumed is not None:
                self.state = resumed
                self.state.resumed_from.append(resumed.epoch)
                logger.info("resuming %s after epoch %d (phase %s)", self.model_id, resumed.epoch, resumed.phase)
                model = keras.models.load_model(self.checkpoints.last_path)
            else:
                model = build_model(spec, len(self.plan.classes))
                self._compile(model, self.scaled_learning_rate(spec.optimizer.learning_rate))
            self.progress(stage=self.state.phase, epoch=self.state.epoch, epochs=self.total_epochs,
                          resumed_from_epoch=self.state.resumed_from[-1] if self.state.resumed_from else None,
                          pid=os.getpid(), history=self.state.history)
            if self.state.phase == PHASE_HEAD:
                stopped_early = self._early_stopped()
                if not stopped_early:
                    self._fit(model, datasets, spec.epochs)
                self.state.phase = PHASE_FINE_TUNE if spec.fine_tuning else PHASE_DONE
            if self.state.phase == PHASE_FINE_TUNE:
                if self.state.fine_tune_start is None:
                    self._start_fine_tuning(model)
                assert self.state.fine_tune_start is not None
                if not self._early_stopped():
                    self._fit(model, datasets, self.state.fine_tune_start + spec.fine_tune.epochs)
                self.state.phase = PHASE_DONE
            self._restore_best(model)
        self._datasets = datasets
        if self.role is not None:
            model = self._single_device_copy(model)
        return model

    def _single_device_copy(self, model: keras.Model) -> keras.Model:
        """Multi-worker: every worker saves the trained model (the chief into its own directory, the others into
        their temporary one); the chief reloads it outside the strategy, so that calibration, evaluation and
        export run on the chief alone, on the whole splits, without the other workers' collectives."""
        path = self.checkpoints.dir / "trained.keras"
        model.save(path)
        return keras.models.load_model(path) if self.is_chief else model

    def run_as_worker(self) -> None:
        """A multi-worker job's other workers: train in step with the chief, write nothing, clean up."""
        try:
            self.train()
        finally:
            shutil.rmtree(self.checkpoints.dir, ignore_errors=True)
        assert self.role is not None
        logger.info("%s finished training %s; the chief stores the model", self.role.describe(), self.model_id)

    def _early_stopped(self) -> bool:
        early = self.spec.callbacks.early_stopping
        return early.enabled and self.state.wait >= early.patience

    def _restore_best(self, model: keras.Model) -> None:
        if self.state.best_epoch is not None and self.checkpoints.best_path.exists():
            model.load_weights(self.checkpoints.best_path)

    def labels(self, split: str) -> np.ndarray:
        assert self.plan is not None
        return np.array([e.label for e in self.plan.splits[split]], dtype=np.int64)

    def embed(self, model: keras.Model, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(features, logits) of a split in plan order: no augmentation, no shuffling (the train split too)."""
        assert self.input is not None
        dataset = self._datasets[split] if split != "train" else self.split_dataset("train", training=False)
        features, logits = openset.embedding_model(model).predict(dataset, verbose=0)
        return np.asarray(features, dtype=np.float32), np.asarray(logits, dtype=np.float32)

    def fit_openset(self, model: keras.Model) -> tuple[evaluation.OpenSetFit, dict[str, Any]]:
        """Bank from train, calibration and thresholds from validation; returns the fit and validation figures."""
        self.progress(stage="calibrating")
        train_features, _ = self.embed(model, "train")
        val_features, val_logits = self.embed(model, "validation")
        val_labels = self.labels("validation")
        data = self.spec.data
        fit = evaluation.fit_openset(
            train_features, self.labels("train"), val_features, val_logits, val_labels, self.spec.openset,
            fitted_on=f"validation split of {data.dataset} v{data.manifest_version} (kNN bank: train split)",
            seed=self.spec.seed)
        validation = {"val_top1": float((val_logits.argmax(axis=1) == val_labels).mean()),
                      "val_ece": fit.card.ece_after}
        assert self.plan is not None
        validation.update(evaluation.observation_metrics(
            val_logits, val_labels, [e.observation_id for e in self.plan.splits["validation"]], prefix="val_"))
        return fit, validation

    def evaluate(self, model: keras.Model, fit: evaluation.OpenSetFit) -> dict[str, Any]:
        """Test-split figures with the validation-fitted temperature and threshold: reported only."""
        assert self.plan is not None
        self.progress(stage="evaluating")
        features, logits = self.embed(model, "test")
        labels = self.labels("test")
        metrics = evaluation.classification_metrics(openset.softmax(logits, fit.card.temperature), labels,
                                                    self.plan.class_names)
        metrics.update(evaluation.openset_test_figures(logits, features, labels, fit))
        metrics.update(evaluation.observation_metrics(
            logits, labels, [e.observation_id for e in self.plan.splits["test"]],
            novelty=fit.scorer.score(features) / fit.card.threshold))
        return metrics

    # --- artifacts and registry -----------------------------------------------------------------------
    def card(self, status: ModelStatus, **changes: Any) -> ModelCard:
        fields: dict[str, Any] = {
            "model_id": self.model_id, "status": status, "created_at": self.created_at,
            "dataset": self.spec.data.dataset, "manifest_version": self.spec.data.manifest_version,
            "taxon_level": self.spec.data.taxon_level, "backbone": self.spec.backbone.name.value,
            "image_size": self.spec.data.image_size, "classes": self.plan.classes if self.plan else [],
            "spec": self.spec.model_dump(mode="json"), "job_id": self.job_id,
            "test_split_hash": self.plan.test_split_hash() if self.plan else None, "output": "logits",
        }
        fields.update(changes)
        return ModelCard(**fields)

    def put_artifact(self, name: str, data: bytes, content_type: str, artifacts: list[str]) -> None:
        self.store.put_bytes(model_key(self.model_id, name), data, content_type)
        artifacts.append(name)

    def save_artifacts(self, model: keras.Model, metrics: dict[str, Any], fit: evaluation.OpenSetFit) -> list[str]:
        assert self.plan is not None
        self.progress(stage="exporting")
        artifacts: list[str] = []
        export_dir = self.local / "export"
        shutil.rmtree(export_dir, ignore_errors=True)
        export_dir.mkdir(parents=True)
        model_path = export_dir / "model.keras"
        model.save(model_path)
        self.store.put_file(model_key(self.model_id, "model.keras"), model_path)
        artifacts.append("model.keras")
        as_json = "application/json"
        labels = [label.model_dump(mode="json") for label in self.plan.classes]
        self.put_artifact("labels.json", _json({"taxon_level": self.spec.data.taxon_level.value, "classes": labels}),
                          as_json, artifacts)
        self.put_artifact("spec.json", _json(self.spec.model_dump(mode="json")), as_json, artifacts)
        self.put_artifact("distribution.json", _json(self.distribution()), as_json, artifacts)
        self.put_artifact("metrics.json", _json(metrics), as_json, artifacts)
        self.put_artifact("history.json", _json(self.state.history), as_json, artifacts)
        self.put_artifact("splits.json", _json({
            "counts": self.plan.counts(), "test_split_hash": self.plan.test_split_hash(),
            "test_image_ids": sorted(e.image_id for e in self.plan.splits["test"])}), as_json, artifacts)
        self.put_artifact("curves.png", evaluation.curves_png(self.state.history, self.state.fine_tune_start),
                          "image/png", artifacts)
        self.put_artifact("confusion.png", evaluation.confusion_png(metrics["confusion"], self.plan.class_names),
                          "image/png", artifacts)
        scorer_path = export_dir / "openset.npz"
        fit.scorer.save(scorer_path)
        self.store.put_file(model_key(self.model_id, "openset.npz"), scorer_path)
        artifacts.append("openset.npz")
        self.put_artifact("calibration.json", _json(fit.calibration), as_json, artifacts)
        self.put_artifact("reliability.png", evaluation.reliability_png(
            fit.calibration["before"], fit.calibration["after"], fit.card.temperature), "image/png", artifacts)
        exports: dict[str, str] = {}
        if self.spec.export.saved_model or self.spec.export.tflite_float16:
            saved_model = export_dir / "saved_model"
            try:
                model.export(str(saved_model), format="tf_saved_model", verbose=False)
            except Exception as exc:  # noqa: BLE001 - an export problem must not lose the trained model
                logger.warning("SavedModel export failed: %s", exc)
                exports["saved_model"] = f"failed: {exc}"
            else:
                if self.spec.export.saved_model:
                    for path in sorted(p for p in saved_model.rglob("*") if p.is_file()):
                        name = f"saved_model/{path.relative_to(saved_model)}"
                        self.store.put_file(model_key(self.model_id, name), path)
                        artifacts.append(name)
                    exports["saved_model"] = "ok"
                if self.spec.export.tflite_float16:
                    exports["tflite_float16"] = self._tflite(saved_model, artifacts)
        self.put_artifact("exports.json", _json(exports), as_json, artifacts)
        return artifacts

    def _tflite(self, saved_model: Path, artifacts: list[str]) -> str:
        try:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
            data = converter.convert()
        except Exception as exc:  # noqa: BLE001 - record why and move on (some builds lack the converter)
            logger.warning("TFLite float16 conversion failed: %s", exc)
            return f"failed: {type(exc).__name__}: {str(exc)[:500]}"
        self.put_artifact("model_fp16.tflite", data, "application/octet-stream", artifacts)
        return "ok"

    def run(self) -> ModelCard:
        """Train, evaluate, store; the card says 'training' meanwhile and 'complete' at the end."""
        if not self.is_chief:
            raise RuntimeError("only the chief of a multi-worker job stores the model: call run_as_worker")
        existing = self._existing_card()
        if existing is not None:
            self.created_at = existing.created_at
        self.registry.save_card(self.card(ModelStatus.training))
        model = self.train()
        fit, validation = self.fit_openset(model)
        metrics = self.evaluate(model, fit)
        metrics.update(validation)
        artifacts = self.save_artifacts(model, metrics, fit)
        summary = {name: float(metrics[name]) for name in SUMMARY_METRICS if name in metrics}
        summary["best_val_accuracy"] = float(self.state.best_val_accuracy)
        card = self.card(ModelStatus.complete, metrics=summary, artifacts=artifacts, openset=fit.card)
        self.registry.save_card(card)
        self.checkpoints.clear()
        self.progress(stage="complete", metrics=summary)
        logger.info("model %s complete: top1 %.3f top3 %.3f macro F1 %.3f", self.model_id, summary["top1"],
                    summary["top3"], summary["macro_f1"])
        if self.spec.auto_promote:
            maybe_auto_promote(self.registry, card)
        shutil.rmtree(self.local, ignore_errors=True)
        return card

    def _existing_card(self) -> ModelCard | None:
        try:
            return self.registry.card(self.model_id)
        except Exception:  # noqa: BLE001 - no card yet (first run)
            return None


def resolve_mixed_precision(spec: TrainingJobSpec) -> TrainingJobSpec:
    """``mixed_precision: auto`` made true with a GPU, false on a CPU (float16 has no fast path there); the
    resolved spec is what the card and spec.json record, so the model says how it was trained."""
    if spec.mixed_precision != "auto":
        return spec
    return spec.with_overrides({"mixed_precision": bool(tf.config.list_physical_devices("GPU"))})


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, default=str).encode()
