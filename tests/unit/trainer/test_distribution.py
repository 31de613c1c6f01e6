"""Strategies from the spec and TF_CONFIG; batch and learning rate scaled by the replicas (TensorFlow, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tensorflow as tf

from services.trainer.multiworker import TF_CONFIG, tf_config
from services.trainer.task import TrainingRun, make_strategy, strategy_name
from shared.storage import ObjectStore
from shared.training import DistributionStrategy, TrainingJobSpec

pytestmark = [pytest.mark.unit, pytest.mark.ml]


def spec(**changes: object) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"data": {"dataset": "fungi", "manifest_version": 1, "image_size": 32},
                                           "backbone": {"name": "tiny_cnn", "weights": "none"},
                                           "batch_size": 16, **changes})


def test_default_is_one_device_and_mirrored_is_every_local_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TF_CONFIG, raising=False)
    assert strategy_name(make_strategy(DistributionStrategy.default)) == "default"
    mirrored = make_strategy(DistributionStrategy.mirrored)
    assert strategy_name(mirrored) == "MirroredStrategy"
    assert mirrored.num_replicas_in_sync == max(1, len(tf.config.list_logical_devices("GPU")))


def test_a_tf_config_cluster_needs_the_mirrored_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TF_CONFIG, json.dumps(tf_config(["127.0.0.1:1", "127.0.0.1:2"], 0)))
    with pytest.raises(ValueError, match="use 'mirrored'"):
        make_strategy(DistributionStrategy.default)


class FourReplicas(tf.distribute.Strategy):
    """Only what TrainingRun reads of a strategy: how many replicas are in sync."""

    def __init__(self) -> None:
        super().__init__(tf.distribute.get_strategy().extended)

    @property
    def num_replicas_in_sync(self) -> int:
        return 4


def test_the_global_batch_and_the_learning_rates_scale_with_the_replicas(tmp_path: Path) -> None:
    store = ObjectStore.__new__(ObjectStore)  # never called: nothing is trained here
    store.bucket = "b"  # type: ignore[misc]
    run = TrainingRun(spec(optimizer={"learning_rate": 1e-4},
                           fine_tune={"enabled": True, "learning_rate": 1e-5}),
                      "m-distribution", store, tmp_path, strategy=FourReplicas())
    assert run.is_chief and run.replicas == 4 and run.global_batch_size == 64
    figures = run.distribution()
    assert figures["per_replica_batch_size"] == 16 and figures["global_batch_size"] == 64
    assert figures["learning_rate"] == pytest.approx(4e-4)
    assert figures["fine_tune_learning_rate"] == pytest.approx(4e-5)
    assert figures["workers"] == 1
