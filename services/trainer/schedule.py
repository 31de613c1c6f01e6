"""The learning rate of a phase: a curve over steps (warmup, then constant or cosine) times a plateau factor.

Keras' ReduceLROnPlateau writes ``optimizer.learning_rate`` and refuses a LearningRateSchedule, and a custom
schedule object in the saved model would make ``model.keras`` need this package to load (the inference service
loads it with plain Keras). So the optimizer keeps a plain float rate and :class:`LearningRateController` sets
it before every step: ``curve(step) * plateau.scale``. The plateau state (best, wait, scale) lives in the
training state (``checkpoint/state.json``) and the step comes from ``optimizer.iterations`` (saved in
``last.keras``), so a resumed run continues on the same rate as the run that was killed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import keras

from shared.training import CallbacksConfig, OptimizerConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseCurve:
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then constant or a half cosine from ``peak`` down
    to ``peak * floor`` at ``total_steps`` (keras.optimizers.schedules.CosineDecay with warmup_target=peak,
    initial_learning_rate=0, decay_steps=total_steps - warmup_steps, alpha=floor)."""

    peak: float
    total_steps: int
    warmup_steps: int = 0
    shape: str = "constant"
    floor: float = 0.0

    @classmethod
    def for_phase(cls, optimizer: OptimizerConfig, peak: float, epochs: int, steps_per_epoch: int) -> PhaseCurve:
        total = max(1, epochs * steps_per_epoch)
        warmup = min(total, round(optimizer.warmup_epochs * steps_per_epoch))
        return cls(peak=peak, total_steps=total, warmup_steps=warmup, shape=optimizer.schedule,
                   floor=optimizer.cosine_floor)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak * step / self.warmup_steps
        if self.shape == "constant":
            return self.peak
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.peak * ((1.0 - self.floor) * cosine + self.floor)


@dataclass
class PlateauState:
    """ReduceLROnPlateau's counters, kept in the training state so that a resume does not reset them."""

    scale: float = 1.0  # product of the reductions so far
    best: float | None = None
    wait: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def scalar(variable: Any) -> float:
    """A Keras variable's value (``.numpy()``: ``convert_to_numpy`` on a variable warns under NumPy 2)."""
    return float(variable.numpy()) if hasattr(variable, "numpy") else float(variable)


def improved(value: float, best: float | None, monitor: str, min_delta: float) -> bool:
    """``value`` beats ``best`` by more than ``min_delta`` (lower for losses, higher otherwise)."""
    if best is None:
        return True
    return value < best - min_delta if "loss" in monitor else value > best + min_delta


class LearningRateController(keras.callbacks.Callback):
    """Sets the optimizer's rate before every training step; on a plateau of ``callbacks.monitor`` lowers the
    scale by ``reduce_lr.factor`` (never making the peak rate go below ``reduce_lr.min_lr``)."""

    def __init__(self, curve: PhaseCurve, plateau: PlateauState, callbacks: CallbacksConfig) -> None:
        super().__init__()
        self.curve = curve
        self.plateau = plateau
        self.config = callbacks
        self.step = 0

    @property
    def current(self) -> float:
        return self.curve(self.step) * self.plateau.scale

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.step = int(scalar(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.model.optimizer.learning_rate = self.current
        self.step += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        reduce_lr, monitor = self.config.reduce_lr, self.config.monitor
        value = (logs or {}).get(monitor)
        if not reduce_lr.enabled or value is None:
            return
        plateau = self.plateau
        if improved(float(value), plateau.best, monitor, self.config.min_delta):
            plateau.best, plateau.wait = float(value), 0
            return
        plateau.wait += 1
        if plateau.wait >= reduce_lr.patience:
            floor = reduce_lr.min_lr / self.curve.peak
            if plateau.scale > floor:
                plateau.scale = max(plateau.scale * reduce_lr.factor, floor)
                logger.info("%s has not improved for %d epochs: learning rate x%g (now %g of the curve)",
                            monitor, plateau.wait, reduce_lr.factor, plateau.scale)
            plateau.wait = 0


def fine_tune_peak(requested: float, head_peak: float, head_plateau: PlateauState) -> float:
    """The fine-tuning peak rate: as requested, but never above the head's rate as ReduceLROnPlateau left it.

    The head's level is its peak times the plateau reductions, not the position on its cosine: a cosine that
    ends near zero would otherwise forbid fine-tuning altogether."""
    return min(requested, head_peak * head_plateau.scale)
