"""``sporeprint train``: submit a training job or a sweep and follow it (epochs, loss, accuracy, ETA)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from sporeprint.commands.common import client_of, echo_json, percent, read_document, service_options


@click.group()
def train() -> None:
    """Training jobs and sweeps (through the trainer API)."""


@train.command("submit")
@click.argument("spec_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--follow/--no-follow", default=False, help="show the epochs until the job ends")
@click.option("--interval", type=float, default=2.0, show_default=True, help="seconds between polls")
@service_options("trainer")
def submit(spec_file: Path, follow: bool, interval: float, url: str | None, token: str | None) -> None:
    """Queue the job SPEC_FILE describes (YAML or JSON, a TrainingJobSpec; `GET /presets` lists presets)."""
    spec = read_document(spec_file)
    with client_of("trainer", url, token) as trainer:
        accepted = trainer.submit_job(spec)
        sizes = ", ".join(f"{split} {count}" for split, count in accepted.split_sizes.items())
        click.echo(f"job {accepted.job_id}: v{accepted.manifest_version}, {len(accepted.classes)} classes"
                   + (f" ({sizes})" if sizes else ""), err=True)
        if follow:
            follow_job(trainer, accepted.job_id, interval)
        else:
            click.echo(accepted.job_id)


@train.command("watch")
@click.argument("job_id")
@click.option("--interval", type=float, default=2.0, show_default=True, help="seconds between polls")
@service_options("trainer")
def watch(job_id: str, interval: float, url: str | None, token: str | None) -> None:
    """Follow a training job until it ends."""
    with client_of("trainer", url, token) as trainer:
        follow_job(trainer, job_id, interval)


@train.command("status")
@click.argument("job_id")
@service_options("trainer")
def status(job_id: str, url: str | None, token: str | None) -> None:
    """A job's state, epoch, history and test metrics as JSON."""
    with client_of("trainer", url, token) as trainer:
        echo_json(trainer.job(job_id).model_dump(mode="json"))


@train.command("list")
@service_options("trainer")
def list_jobs(url: str | None, token: str | None) -> None:
    """The training jobs, newest first."""
    with client_of("trainer", url, token) as trainer:
        for job in trainer.jobs():
            epochs = f"{job.epoch}/{job.epochs}" if job.epochs else str(job.epoch)
            click.echo(f"{job.job_id}  {job.state.value:<10} epoch {epochs:<7} {job.stage or '-':<12} "
                       f"{job.name or ''}".rstrip())


@train.command("cancel")
@click.argument("job_id")
@service_options("trainer")
def cancel(job_id: str, url: str | None, token: str | None) -> None:
    """Cancel a queued or running job (its checkpoints stay: requeue resumes it)."""
    with client_of("trainer", url, token) as trainer:
        click.echo(f"job {job_id}: {trainer.cancel_job(job_id).state.value}")


@train.command("sweep")
@click.argument("sweep_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--follow/--no-follow", default=False, help="show the runs' table until every run ends")
@click.option("--interval", type=float, default=5.0, show_default=True, help="seconds between polls")
@service_options("trainer")
def sweep(sweep_file: Path, follow: bool, interval: float, url: str | None, token: str | None) -> None:
    """Queue a sweep: SWEEP_FILE has `base` (a job spec) and `grid` (dotted spec path -> values)."""
    document = read_document(sweep_file)
    with client_of("trainer", url, token) as trainer:
        accepted = trainer.submit_sweep(document)
        click.echo(f"sweep {accepted.sweep_id}: {len(accepted.jobs)} jobs on v{accepted.manifest_version}", err=True)
        if not follow:
            click.echo(accepted.sweep_id)
            return
        from shared.queue import TERMINAL_STATES

        while True:
            result = trainer.sweep(accepted.sweep_id)
            if all(row.state in TERMINAL_STATES for row in result.rows):
                break
            time.sleep(interval)
        for row in result.rows:
            mark = "*" if row.job_id == result.best_job_id else " "
            click.echo(f"{mark} {row.job_id}  {row.state.value:<10} val acc {percent(row.best_val_accuracy):>6}  "
                       f"test top-1 {percent(row.test_top1):>6}  {row.label}")
        if result.best_job_id:
            click.echo(f"best: {result.best_job_id} (promote: sporeprint models promote {result.best_job_id})")


def follow_job(trainer: Any, job_id: str, interval: float) -> None:
    """A progress bar over epochs (loss, accuracy, validation accuracy, ETA) until the job ends; a failed or
    cancelled job ends the command with its error (exit code 1)."""
    from tqdm import tqdm

    from shared.queue import TERMINAL_STATES, JobState

    job = trainer.job(job_id)  # before the bar: an unknown id or a down service is one line
    bar = tqdm(total=job.epochs or 0, unit="epoch", desc=job_id, dynamic_ncols=True, file=sys.stderr)
    try:
        while True:
            if job.epochs and bar.total != job.epochs:
                bar.total = job.epochs
            bar.update(max(0, job.epoch - bar.n))
            last = job.history[-1] if job.history else {}
            bar.set_postfix(stage=job.stage or job.state.value, loss=_figure(last.get("loss")),
                            acc=_figure(last.get("accuracy")), val_acc=_figure(last.get("val_accuracy")),
                            eta=f"{job.eta_seconds:.0f}s" if job.eta_seconds is not None else "-", refresh=False)
            bar.refresh()
            if job.state in TERMINAL_STATES:
                break
            time.sleep(interval)
            job = trainer.job(job_id)
    finally:
        bar.close()
    if job.state is not JobState.completed:
        raise click.ClickException(f"job {job_id} {job.state.value}: {job.error or 'no reason given'}")
    figures = ", ".join(f"{name} {value:.3f}" for name, value in sorted(job.metrics.items()))
    click.echo(f"job {job_id} completed after {job.epoch} epochs: {figures}")


def _figure(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"
