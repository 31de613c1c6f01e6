"""The trainer's own Prometheus metrics, beside the request metrics every service has: the last epoch any
training job finished (written to Redis by the worker that ran it: ``shared.job_metrics``), epochs and jobs
counted, and the ``train`` queue.

The gauges describe the most recent epoch of whichever job reported last (one job at a time per GPU worker; with
several workers they interleave: ``sporeprint_training_last_epoch_timestamp_seconds`` says how fresh they are).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from shared.job_metrics import JobMetrics, JobMetricsCollector, Label, RedisSource, ScrapeConnection, counter, gauge
from shared.metrics import HttpMetrics
from shared.queue import JobState, QueueName

PHASES = frozenset({"head", "fine_tune"})
ENDED_STATES = frozenset({JobState.completed.value, JobState.failed.value, JobState.cancelled.value})

EPOCH = gauge("sporeprint_training_epoch", "the last finished epoch (both phases counted)")
LOSS = gauge("sporeprint_training_loss", "training loss of the last finished epoch")
ACCURACY = gauge("sporeprint_training_accuracy", "training accuracy of the last finished epoch")
VAL_LOSS = gauge("sporeprint_training_val_loss", "validation loss of the last finished epoch")
VAL_ACCURACY = gauge("sporeprint_training_val_accuracy", "validation accuracy of the last finished epoch")
LEARNING_RATE = gauge("sporeprint_training_learning_rate", "learning rate at the end of the last finished epoch")
IMAGES_PER_SECOND = gauge("sporeprint_training_images_per_second",
                          "training images per second of the last finished epoch (its wall time, validation included)")
LAST_EPOCH_AT = gauge("sporeprint_training_last_epoch_timestamp_seconds", "when the last epoch finished (Unix time)")
EPOCHS = counter("sporeprint_training_epochs", "epochs finished, by phase", Label("phase", PHASES))
TRAINING_JOBS = counter("sporeprint_training_jobs", "training jobs that ended in the worker, by state",
                        Label("state", ENDED_STATES))
TRAINING_METRICS = (EPOCH, LOSS, ACCURACY, VAL_LOSS, VAL_ACCURACY, LEARNING_RATE, IMAGES_PER_SECOND, LAST_EPOCH_AT,
                    EPOCHS, TRAINING_JOBS)
_EPOCH_FIGURES = (("loss", LOSS), ("accuracy", ACCURACY), ("val_loss", VAL_LOSS), ("val_accuracy", VAL_ACCURACY),
                  ("learning_rate", LEARNING_RATE))


class TrainerMetrics(HttpMetrics):
    def __init__(self, connect: RedisSource | None = None) -> None:
        super().__init__("trainer")
        self.registry.register(JobMetricsCollector(connect or ScrapeConnection(), TRAINING_METRICS,
                                                   (QueueName.train,)))


class TrainingRecorder:
    """What a training job's worker writes: one Redis round trip per epoch, and one at the end."""

    def __init__(self, metrics: JobMetrics) -> None:
        self.metrics = metrics

    def epoch(self, row: Mapping[str, Any], seconds: float, images: int) -> None:
        """``row``: the epoch's history row (epoch, phase, Keras logs, learning_rate); ``images``: the training
        images one epoch reads; ``seconds``: the epoch's wall time."""
        with self.metrics.batch() as batch:
            batch.set(EPOCH, float(row["epoch"]))
            for name, metric in _EPOCH_FIGURES:
                if name in row:
                    batch.set(metric, float(row[name]))
            if seconds > 0 and math.isfinite(seconds):
                batch.set(IMAGES_PER_SECOND, images / seconds)
            batch.set(LAST_EPOCH_AT, time.time())
            batch.incr(EPOCHS, labels={"phase": str(row.get("phase", ""))})

    def ended(self, state: JobState) -> None:
        self.metrics.incr(TRAINING_JOBS, labels={"state": state.value})
