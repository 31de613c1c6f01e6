"""TF_CONFIG for multi-host training: who is the chief, and the cluster an indexed Job's pods make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.trainer.multiworker import (
    JOB_COMPLETION_INDEX,
    TF_CONFIG,
    ClusterRole,
    cluster_role,
    ensure_tf_config,
    indexed_job_addresses,
    load_spec,
    tf_config,
)
from services.trainer.presets import demo_spec, gpu_spec

pytestmark = pytest.mark.unit

WORKERS = ["10.0.0.1:2222", "10.0.0.2:2222", "10.0.0.3:2222"]


def env(config: dict) -> dict[str, str]:
    return {TF_CONFIG: json.dumps(config)}


def test_worker_0_is_the_chief_unless_the_cluster_names_one() -> None:
    roles = [cluster_role(env(tf_config(WORKERS, index))) for index in range(3)]
    assert roles == [ClusterRole("worker", index, 3) for index in range(3)]
    assert [role.is_chief for role in roles if role] == [True, False, False]
    with_chief = {"cluster": {"chief": ["c:1"], "worker": WORKERS[:1]}, "task": {"type": "worker", "index": 0}}
    role = cluster_role(env(with_chief))
    assert role is not None and not role.is_chief and role.workers == 2
    assert role.describe() == "worker 0 of 2 (worker)"


def test_no_cluster_or_a_cluster_of_one_is_no_multi_worker_job() -> None:
    assert cluster_role({}) is None
    assert cluster_role(env({"cluster": {"worker": WORKERS[:1]}, "task": {"type": "worker", "index": 0}})) is None


def test_a_task_outside_its_cluster_is_refused() -> None:
    with pytest.raises(ValueError, match="not a chief or worker"):
        cluster_role(env({"cluster": {"worker": WORKERS}, "task": {"type": "worker", "index": 3}}))
    with pytest.raises(ValueError, match="not a chief or worker"):
        cluster_role(env({"cluster": {"worker": WORKERS}, "task": {"type": "ps", "index": 0}}))


def test_an_indexed_jobs_pods_build_their_tf_config_from_the_completion_index() -> None:
    environ = {JOB_COMPLETION_INDEX: "1"}
    role = ensure_tf_config(environ, 2, "train-multiworker-{index}.train-multiworker:2222")
    assert role == ClusterRole("worker", 1, 2)
    assert json.loads(environ[TF_CONFIG]) == {
        "cluster": {"worker": ["train-multiworker-0.train-multiworker:2222",
                               "train-multiworker-1.train-multiworker:2222"]},
        "task": {"type": "worker", "index": 1}}
    given = env(tf_config(WORKERS, 2))  # an explicit TF_CONFIG wins
    assert ensure_tf_config(given, None, None) == ClusterRole("worker", 2, 3)


@pytest.mark.parametrize(("environ", "workers", "template", "message"), [
    ({}, 2, "w-{index}:2222", "set TF_CONFIG"),
    ({JOB_COMPLETION_INDEX: "0"}, 1, "w-{index}:2222", "at least 2 workers"),
    ({JOB_COMPLETION_INDEX: "2"}, 2, "w-{index}:2222", "outside the cluster"),
    ({JOB_COMPLETION_INDEX: "0"}, 2, "w:2222", "must contain {index}"),
])
def test_an_incomplete_cluster_is_refused(environ: dict[str, str], workers: int, template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ensure_tf_config(environ, workers, template)


def test_indexed_job_addresses() -> None:
    assert indexed_job_addresses(2, "j-{index}.s:1") == ["j-0.s:1", "j-1.s:1"]


def test_a_multi_worker_spec_is_mirrored_and_pinned(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(gpu_spec("fungi", 3).model_dump_json())
    assert load_spec(path).data.manifest_version == 3
    path.write_text(gpu_spec("fungi").model_dump_json())
    with pytest.raises(ValueError, match="pin data.manifest_version"):
        load_spec(path)
    path.write_text(demo_spec("fungi", 3).model_dump_json())
    with pytest.raises(ValueError, match="distribution 'mirrored'"):
        load_spec(path)


def test_the_gpu_preset_uses_every_gpu_and_says_the_batch_is_per_replica() -> None:
    spec = gpu_spec("fungi", 1)
    assert spec.distribution == "mirrored"
    description = type(spec).model_fields["batch_size"].description or ""
    assert "per replica" in description and "learning rates" in description
