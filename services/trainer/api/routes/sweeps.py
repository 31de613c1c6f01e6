"""Sweeps: one base spec and a grid of overrides -> one job per combination, and their comparison."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status

from services.trainer import evaluation, jobs
from services.trainer.api.deps import ManifestsDep, RedisDep, RegistryDep, TrainerSettingsDep
from services.trainer.api.routes.jobs import job_view
from services.trainer.schemas import IdPath, SweepAccepted, SweepJob, SweepOut, SweepRow, SweepSummary
from services.trainer.submission import pin_and_plan
from shared.auth import TokenDep
from shared.queue import JobState
from shared.training import SweepSpec

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

SWEEP_NOT_FOUND = "sweep not found"


@router.post("", response_model=SweepAccepted, status_code=status.HTTP_202_ACCEPTED)
def submit_sweep(sweep: SweepSpec, _: TokenDep, manifests: ManifestsDep, connection: RedisDep,
                 trainer: TrainerSettingsDep) -> SweepAccepted:
    # Every point is checked against the manifest first: a sweep is queued whole or not at all.
    pinned_base, _base_plan = pin_and_plan(manifests, sweep.base)
    version = pinned_base.data.manifest_version
    assert version is not None
    points = []
    for overrides, spec in sweep.expand():
        pinned, _plan = pin_and_plan(manifests, spec.pinned(version))
        points.append((overrides, pinned))
    sweep_id = jobs.new_job_id("s")
    accepted = []
    for index, (overrides, spec) in enumerate(points):
        label = ", ".join(f"{path.rsplit('.', 1)[-1]}={value}" for path, value in overrides.items())
        named = spec.model_copy(update={"name": f"{sweep.name or sweep_id} [{label}]"})
        job = jobs.submit_training(connection, named, trainer.job_timeout_seconds,
                                    job_id=f"{sweep_id}-{index:02d}")
        accepted.append(SweepJob(job_id=job.id, overrides=overrides))
    jobs.save_sweep(connection, sweep_id, {
        "sweep_id": sweep_id, "name": sweep.name, "created_at": datetime.now(UTC).isoformat(),
        "grid": sweep.grid, "jobs": [job.model_dump(mode="json") for job in accepted],
    })
    return SweepAccepted(sweep_id=sweep_id, manifest_version=version, jobs=accepted)


@router.get("", response_model=list[SweepSummary])
def list_sweeps(connection: RedisDep, registry: RegistryDep,
                limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[SweepSummary]:
    """The newest sweeps first, each with its jobs' states and its best run so far."""
    summaries = []
    for record in jobs.recent_sweeps(connection, limit):
        sweep = _comparison(connection, registry, record)
        states: dict[str, int] = {}
        for row in sweep.rows:
            states[row.state.value] = states.get(row.state.value, 0) + 1
        if sweep.missing_jobs:
            states["gone"] = sweep.missing_jobs
        best = next((row for row in sweep.rows if row.job_id == sweep.best_job_id), None)
        summaries.append(SweepSummary(
            sweep_id=sweep.sweep_id, name=sweep.name, created_at=sweep.created_at, grid=sweep.grid,
            jobs=len(sweep.rows) + sweep.missing_jobs, states=states, best_job_id=sweep.best_job_id,
            best_val_accuracy=best.best_val_accuracy if best else None))
    return summaries


def _sweep(connection: Any, registry: Any, sweep_id: str) -> SweepOut:
    record = jobs.load_sweep(connection, sweep_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, SWEEP_NOT_FOUND)
    return _comparison(connection, registry, record)


def _comparison(connection: Any, registry: Any, record: dict[str, Any]) -> SweepOut:
    sweep_id = record["sweep_id"]
    rows, missing = [], 0
    for entry in record["jobs"]:
        try:
            view = job_view(connection, registry, entry["job_id"], 0)
        except HTTPException as exc:  # its record expired and it left no model: the sweep still answers
            if exc.status_code != status.HTTP_404_NOT_FOUND:
                raise
            missing += 1
            continue
        label = ", ".join(f"{path.rsplit('.', 1)[-1]}={value}" for path, value in entry["overrides"].items())
        rows.append(SweepRow(
            job_id=view.job_id, label=label, overrides=entry["overrides"], state=view.state, epoch=view.epoch,
            best_val_accuracy=view.best_val_accuracy, test_top1=view.metrics.get("top1"),
            test_top3=view.metrics.get("top3"), macro_f1=view.metrics.get("macro_f1"),
        ))
    complete = [row for row in rows if row.state is JobState.completed and row.best_val_accuracy is not None]
    best = max(complete, key=lambda row: row.best_val_accuracy or 0.0) if complete else None
    return SweepOut(sweep_id=sweep_id, name=record.get("name"), created_at=record["created_at"],
                    grid=record["grid"], rows=rows, missing_jobs=missing, best_job_id=best.job_id if best else None,
                    plot_url=f"/sweeps/{sweep_id}/plot.png")


@router.get("/{sweep_id}", response_model=SweepOut)
def get_sweep(sweep_id: IdPath, connection: RedisDep, registry: RegistryDep) -> SweepOut:
    return _sweep(connection, registry, sweep_id)


@router.get("/{sweep_id}/plot.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def sweep_plot(sweep_id: IdPath, connection: RedisDep, registry: RegistryDep) -> Response:
    sweep = _sweep(connection, registry, sweep_id)
    png = evaluation.comparison_png([row.model_dump() for row in sweep.rows])
    return Response(content=png, media_type="image/png")
