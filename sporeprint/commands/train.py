"""``sporeprint train``: submit a training job or a sweep and follow it (epochs, loss, accuracy, ETA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sporeprint.commands.common import (
    client_of,
    echo_json,
    ended,
    follow,
    percent,
    read_document,
    service_options,
)


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
        _follow_sweep(trainer, accepted.sweep_id, interval)


@train.command("sweeps")
@service_options("trainer")
def sweeps(url: str | None, token: str | None) -> None:
    """The sweeps, newest first: their jobs' states and best run so far."""
    with client_of("trainer", url, token) as trainer:
        found = trainer.sweeps()
    if not found:
        click.echo("no sweeps yet (sporeprint train sweep SWEEP_FILE)")
    for summary in found:
        states = ", ".join(f"{count} {state}" for state, count in sorted(summary.states.items()))
        best = f"best {summary.best_job_id} (val acc {percent(summary.best_val_accuracy)})" \
            if summary.best_job_id else "no complete run yet"
        click.echo(f"{summary.sweep_id}  {summary.created_at:%Y-%m-%d %H:%M}  {summary.jobs} jobs: {states}; "
                   f"{best}  {summary.name or ''}".rstrip())


@train.command("sweep-status")
@click.argument("sweep_id")
@click.option("--follow/--no-follow", default=False, help="wait until every run ends")
@click.option("--interval", type=float, default=5.0, show_default=True, help="seconds between polls")
@service_options("trainer")
def sweep_status(sweep_id: str, follow: bool, interval: float, url: str | None, token: str | None) -> None:
    """A sweep's runs: state, validation accuracy, test top-1, the best marked."""
    with client_of("trainer", url, token) as trainer:
        if follow:
            _follow_sweep(trainer, sweep_id, interval)
        else:
            _sweep_table(trainer.sweep(sweep_id))


@train.command("resume")
@click.argument("job_id")
@click.option("--force", is_flag=True, help="also a job still marked running whose worker died")
@click.option("--follow/--no-follow", default=False, help="show the epochs until the job ends")
@click.option("--interval", type=float, default=2.0, show_default=True, help="seconds between polls")
@service_options("trainer")
def resume(job_id: str, force: bool, follow: bool, interval: float, url: str | None, token: str | None) -> None:
    """Run a failed or cancelled job again; it resumes after its last checkpointed epoch."""
    with client_of("trainer", url, token) as trainer:
        job = trainer.requeue(job_id, force=force)
        click.echo(f"job {job_id}: {job.state.value}, from epoch {job.epoch}", err=True)
        if follow:
            follow_job(trainer, job_id, interval)


@train.command("presets")
@click.argument("name", required=False)
@click.option("--dataset", help="the dataset the spec trains on (needed with NAME)")
@click.option("--version", "version", type=int, default=None, help="manifest version (default: latest)")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="write the spec to this YAML file (default: stdout)")
@service_options("trainer")
def presets(name: str | None, dataset: str | None, version: int | None, output: Path | None, url: str | None,
            token: str | None) -> None:
    """List the presets, or print preset NAME as a full job spec to edit and submit."""
    import yaml

    with client_of("trainer", url, token) as trainer:
        if name is None:
            for preset in trainer.presets():
                click.echo(f"{preset.name:<16} {preset.description}")
            return
        if not dataset:
            raise click.UsageError("a preset becomes a spec for one dataset: pass --dataset")
        spec = trainer.preset(name, dataset, version)
    text = yaml.safe_dump(spec, sort_keys=False)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output} (edit it, then: sporeprint train submit {output} --follow)", err=True)


def _follow_sweep(trainer: Any, sweep_id: str, interval: float) -> None:
    def runs(sweep: Any) -> tuple[int, int, dict[str, Any]]:
        return sum(ended(row) for row in sweep.rows), len(sweep.rows), {"best": sweep.best_job_id or "-"}

    last = follow(lambda: trainer.sweep(sweep_id), desc=sweep_id, unit="run", interval=interval, progress=runs,
                  finished=lambda sweep: all(ended(row) for row in sweep.rows))
    _sweep_table(last)


def _sweep_table(result: Any) -> None:
    for row in result.rows:
        mark = "*" if row.job_id == result.best_job_id else " "
        click.echo(f"{mark} {row.job_id}  {row.state.value:<10} val acc {percent(row.best_val_accuracy):>6}  "
                   f"test top-1 {percent(row.test_top1):>6}  {row.label}")
    if result.best_job_id:
        click.echo(f"best: {result.best_job_id} (promote: sporeprint models promote {result.best_job_id})")


def follow_job(trainer: Any, job_id: str, interval: float) -> None:
    """A progress bar over epochs (loss, accuracy, validation accuracy, ETA) until the job ends; a failed or
    cancelled job ends the command with its error (exit code 1)."""
    from shared.queue import JobState

    def epochs(job: Any) -> tuple[int, int, dict[str, Any]]:
        last = job.history[-1] if job.history else {}
        return job.epoch, job.epochs or 0, {
            "stage": job.stage or job.state.value, "loss": _figure(last.get("loss")),
            "acc": _figure(last.get("accuracy")), "val_acc": _figure(last.get("val_accuracy")),
            "eta": f"{job.eta_seconds:.0f}s" if job.eta_seconds is not None else "-"}

    job = follow(lambda: trainer.job(job_id), desc=job_id, unit="epoch", interval=interval, progress=epochs)
    if job.state is not JobState.completed:
        raise click.ClickException(f"job {job_id} {job.state.value}: {job.error or 'no reason given'}")
    figures = ", ".join(f"{name} {value:.3f}" for name, value in sorted(job.metrics.items()))
    click.echo(f"job {job_id} completed after {job.epoch} epochs: {figures}")


def _figure(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"
