"""Multi-host training: ``python -m services.trainer.multiworker --spec spec.json --model-id ID``.

Every worker of the cluster runs this same command and the same training, in step (tf.distribute's
``MultiWorkerMirroredStrategy``: gradients are all-reduced between the workers every step). ``TF_CONFIG``
(tf.distribute's cluster description) says who is who; where it is not set, it is built from a Kubernetes
indexed Job's ``JOB_COMPLETION_INDEX`` and ``--workers``/``--address-template`` (deploy/k8s/train-multiworker.yaml:
pod ``<job>-<index>`` is ``<job>-<index>.<headless service>`` in DNS).

Only the chief (task 0) writes: checkpoints and the model go to ``models/<id>/`` and the card to the registry,
once; the other workers save their checkpoints into a temporary directory that is removed when they finish
(TF's multi-worker saving pattern: every worker must save, because reading mirrored variables is collective).
A restarted job resumes every worker from the chief's last checkpoint. No RQ here: the spec comes from a file
(a ConfigMap), with its manifest version pinned, and the model card is the job's record (``GET /models/{id}``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.training import DistributionStrategy, TrainingJobSpec

logger = logging.getLogger(__name__)

TF_CONFIG = "TF_CONFIG"
JOB_COMPLETION_INDEX = "JOB_COMPLETION_INDEX"  # set by Kubernetes in each pod of an indexed Job
MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,63}$")  # shared.registry's model ids


@dataclass(frozen=True)
class ClusterRole:
    """This process in a ``TF_CONFIG`` cluster of several training workers."""

    task_type: str
    task_index: int
    workers: int  # tasks that train: the chief (if named) and the workers
    has_chief: bool = False  # the cluster names a "chief" task

    @property
    def is_chief(self) -> bool:
        # tf.distribute's rule: the "chief" task, or worker 0 when the cluster names no chief
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0
                                             and not self.has_chief)

    def describe(self) -> str:
        role = "chief" if self.is_chief else "worker"
        return f"{self.task_type} {self.task_index} of {self.workers} ({role})"


def cluster_role(environ: Mapping[str, str] | None = None) -> ClusterRole | None:
    """The role ``TF_CONFIG`` gives this process, or None when it names no cluster of two or more workers."""
    raw = (os.environ if environ is None else environ).get(TF_CONFIG, "").strip()
    if not raw:
        return None
    config = json.loads(raw)
    cluster = config.get("cluster") or {}
    chiefs, workers = list(cluster.get("chief") or []), list(cluster.get("worker") or [])
    if len(chiefs) + len(workers) < 2:
        return None
    task = config.get("task") or {}
    task_type, task_index = str(task.get("type", "")), int(task.get("index", -1))
    if task_type not in ("chief", "worker") or not 0 <= task_index < len(cluster.get(task_type) or []):
        raise ValueError(f"TF_CONFIG task {task!r} is not a chief or worker of its cluster")
    return ClusterRole(task_type, task_index, len(chiefs) + len(workers), has_chief=bool(chiefs))


def tf_config(addresses: list[str], index: int) -> dict[str, Any]:
    """A ``TF_CONFIG`` of workers only (worker 0 is the chief) for the worker at ``index``."""
    if len(addresses) < 2:
        raise ValueError("a multi-worker cluster needs at least 2 workers")
    if not 0 <= index < len(addresses):
        raise ValueError(f"worker index {index} is outside the cluster of {len(addresses)}")
    return {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}}


def indexed_job_addresses(workers: int, template: str) -> list[str]:
    """Worker addresses of an indexed Job, e.g. ``train-mw-{index}.train-mw:2222`` -> ``train-mw-0.train-mw:2222``."""
    if "{index}" not in template:
        raise ValueError("the address template must contain {index}")
    return [template.format(index=index) for index in range(workers)]


def ensure_tf_config(environ: MutableMapping[str, str], workers: int | None, template: str | None) -> ClusterRole:
    """Use ``TF_CONFIG`` as given, or build it from ``JOB_COMPLETION_INDEX`` (written back into ``environ``)."""
    if not environ.get(TF_CONFIG, "").strip():
        index = environ.get(JOB_COMPLETION_INDEX)
        if index is None or workers is None or template is None:
            raise ValueError(f"set {TF_CONFIG}, or {JOB_COMPLETION_INDEX} with --workers and --address-template")
        environ[TF_CONFIG] = json.dumps(tf_config(indexed_job_addresses(workers, template), int(index)))
    role = cluster_role(environ)
    if role is None:
        raise ValueError(f"{TF_CONFIG} names fewer than 2 workers: run the RQ worker for one host instead")
    return role


def load_spec(path: Path) -> TrainingJobSpec:
    spec = TrainingJobSpec.model_validate_json(path.read_text())
    if spec.data.manifest_version is None:
        raise ValueError("pin data.manifest_version in the spec: every worker must train on the same version")
    if spec.distribution is not DistributionStrategy.mirrored:
        raise ValueError("a multi-worker job needs distribution 'mirrored'")
    return spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one worker of a multi-host training job (tf.distribute)")
    parser.add_argument("--spec", type=Path, required=True, help="TrainingJobSpec JSON, manifest version pinned")
    parser.add_argument("--model-id", required=True, help="the model id, the same on every worker")
    parser.add_argument("--workers", type=int, help="workers of the indexed Job (without TF_CONFIG)")
    parser.add_argument("--address-template", help="worker address with {index} (without TF_CONFIG)")
    args = parser.parse_args(argv)
    if not MODEL_ID.fullmatch(args.model_id):
        parser.error(f"--model-id must match {MODEL_ID.pattern}")

    from shared.logs import configure_logging
    from shared.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, service="train-multiworker")
    role = ensure_tf_config(os.environ, args.workers, args.address_template)
    spec = load_spec(args.spec)

    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs (collectives are configured
    # at start-up), and it waits here until every worker of the cluster is up.
    from services.trainer.task import TrainingRun, make_strategy
    from shared.registry import ModelRegistry, ModelStatus
    from shared.storage import ObjectStore

    logger.info("multi-worker training %s: %s", args.model_id, role.describe())
    strategy = make_strategy(spec.distribution)
    store = ObjectStore.from_settings(settings)
    run = TrainingRun(spec, args.model_id, store, Path(settings.work_dir), job_id=args.model_id, strategy=strategy)
    if not run.is_chief:
        run.run_as_worker()
        return
    try:
        run.run()
    except BaseException as exc:
        logger.exception("multi-worker training %s failed", args.model_id)
        try:
            ModelRegistry(store).save_card(run.card(ModelStatus.failed, error=f"{type(exc).__name__}: {exc}"))
        except Exception:  # noqa: BLE001 - the failure itself is what matters
            logger.exception("could not mark model %s failed", args.model_id)
        raise


if __name__ == "__main__":
    main()
