"""``make demo``: the whole pipeline on one machine, without Docker.

It starts the local stack (a real S3 server and Redis), the fixture web (an offline stand-in for the image
hosts of a GBIF download), the four services, RQ workers for harvests (one per usable CPU; the first also
curates), a training worker and the console; then imports a GBIF-shaped export, harvests it, scores the
domains and blacklists the ones the curator recommends, curates, trains a small model on the CPU, promotes it
and asks ``/predict`` about photos the model has never seen. Each step prints one line with its numbers.
``sporeprint demo down`` (``make down``) stops every process it started, by PID.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from shared.clients import ServiceUnavailable
from shared.clients.curator import Curation, CuratorClient
from shared.clients.downloader import DownloaderClient, Harvest
from shared.clients.inference import InferenceClient
from shared.clients.trainer import TrainerClient, TrainingJob
from shared.cpus import available_cpus
from shared.queue import TERMINAL_STATES, JobState
from sporeprint.processes import ManagedProcess, start_service, start_worker
from sporeprint.stack import LocalStack, StackError, free_port, terminate_pid, wait_for_port

logger = logging.getLogger(__name__)

STATE_FILE = "demo.json"
DATASET = "fixture-fungi"
SERVICES = {
    "downloader": "services.downloader.main:app",
    "curator": "services.curator.main:app",
    "trainer": "services.trainer.main:app",
    "inference": "services.inference.main:app",
}


# What the demo follows until it ends: a harvest, a curation, a training job.
Job = TypeVar("Job", Harvest, Curation, TrainingJob)


class DemoFailed(RuntimeError):
    """A step of the demo could not finish; the message says which and why."""


@dataclass
class DemoSize:
    """How big a run is: the full demo, or the reduced one CI runs."""

    photos: int = 1500
    classes: int = 6
    domains: int = 10
    herbarium: int = 2
    epochs: int = 12
    image_size: int = 64
    predictions: int = 12
    learning_rates: tuple[float, ...] = (3e-3, 1e-3)  # the sweep the demo trains: one run per rate


CI_SIZE = DemoSize(photos=600, classes=4, domains=6, herbarium=1, epochs=10, predictions=6, learning_rates=(3e-3,))


@dataclass
class Demo:
    stack_dir: Path
    size: DemoSize = field(default_factory=DemoSize)
    say: Callable[[str], None] = print  # noqa: T202 - the demo talks to a person
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    gbif_sample: Path | None = None

    @property
    def state_path(self) -> Path:
        return self.stack_dir / STATE_FILE

    # start and stop
    def start(self) -> None:
        started = time.perf_counter()
        stack = LocalStack(self.stack_dir).up()
        self.say(f"[stack] S3 server http://{stack.s3_endpoint}, Redis {stack.redis_address} "
                 f"({time.perf_counter() - started:.1f} s)")
        work = self.stack_dir / "demo"
        logs = work / "logs"
        ports = {name: free_port() for name in (*SERVICES, "console", "fixtureweb")}
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        env = {
            **stack.env(),
            "SPOREPRINT_ENVIRONMENT": "development",
            "SPOREPRINT_API_TOKEN": self.token,
            "SPOREPRINT_WORK_DIR": str(work / "cache"),
            **{f"SPOREPRINT_{name.upper()}_URL": self.urls[name] for name in SERVICES},
            # the fixture web lives on loopback under *.test names: allow exactly that, nothing private
            "SPOREPRINT_DOWNLOADER_ALLOW_LOOPBACK": "true",
            "SPOREPRINT_DOWNLOADER_RESOLVE": json.dumps({"*.test": "127.0.0.1"}),
            "SPOREPRINT_INFERENCE_ALLOW_LOOPBACK_URLS": "true",
            "SPOREPRINT_INFERENCE_POLL_INTERVAL_S": "1",
        }
        self._save(stack_env=env)  # PIDs are recorded as each process starts, so `down` never misses one
        self._start_fixture_web(work, ports["fixtureweb"], env, logs)
        for name, app in SERVICES.items():
            self._track(start_service(name, app, env, logs, port=ports[name], timeout=120))
        self._track(start_service("console", "sporeprint.console.app:app", env, logs, port=ports["console"]))
        # a harvest's shards are RQ jobs: one harvest worker per usable CPU uses every core
        harvest_workers = available_cpus()
        self._track(start_worker("worker-harvest-curate", ["harvest", "curate"], env, logs))
        for number in range(2, harvest_workers + 1):
            self._track(start_worker(f"worker-harvest-{number}", ["harvest"], env, logs))
        self._track(_start_module("worker-train", "services.trainer.worker", ["train"], env, logs))
        self.say(f"[services] downloader, curator, trainer, inference, console and {harvest_workers + 1} RQ workers up "
                 f"({time.perf_counter() - started:.1f} s since start; logs in {logs})")

    def _start_fixture_web(self, work: Path, port: int, env: dict[str, str], logs: Path) -> None:
        from fixtureweb import ExportConfig, build_export, preset

        web = preset(self.size.domains, self.size.herbarium, n_classes=self.size.classes, seed=7)
        work.mkdir(parents=True, exist_ok=True)
        config_path = work / "web.json"
        web.dump(config_path)
        export = build_export(web, work / "export", ExportConfig(total_photos=self.size.photos, seed=7, port=port))
        self.export_zip = export.zip_path
        self.truth_path = export.truth_path
        fixture = _start_module("fixtureweb", "fixtureweb",
                                ["serve", "--config", str(config_path), "--port", str(port)], env, logs)
        self._track(fixture)
        try:
            wait_for_port(port, 30, fixture.proc)
        except StackError as exc:
            raise DemoFailed(f"the fixture web did not start: {exc}\n{fixture.log_tail()}") from None
        self.say(f"[fixture web] {self.size.domains} image hosts ({self.size.herbarium} herbarium-like) on "
                 f"127.0.0.1:{port}; GBIF export: {export.photos} photos of {export.observations} observations")

    def _track(self, process: ManagedProcess) -> None:
        self.processes[process.name] = process
        self._save()

    def _save(self, stack_env: dict[str, str] | None = None) -> None:
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        state.update({"pids": {name: p.pid for name, p in self.processes.items()}, "urls": self.urls,
                      "token": self.token})
        if stack_env is not None:
            state["env"] = stack_env
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps(state, indent=2))
        self.state_path.chmod(0o600)

    # the pipeline
    def run(self) -> dict[str, Any]:
        results: dict[str, Any] = {}
        with Clients(self.urls, self.token) as api:
            if self.gbif_sample is not None:
                results["gbif_sample"] = self.import_gbif_sample(api, self.gbif_sample)
            results["import"] = self.import_export(api)
            results["harvest"] = self.harvest(api, results["import"]["version"])
            results["curation"] = self.curate(api, results["harvest"]["version"])
            results["training"] = self.train(api, results["curation"]["version"])
            results["predict"] = self.predict(api, results["training"]["model_id"])
        console, model = self.urls["console"], results["training"]["model_id"]
        self.say(f"[console] {console}  (API token for changes: {self.token})")
        self.say(f"  the sweep: {console}/#sweeps/{results['training']['sweep_id']}   the model's training: "
                 f"{console}/#jobs/{model}   its lineage: {console}/#lineage/{model}   predict: {console}/#predict")
        self.say("[stop] make down   (stops every process the demo started, by PID)")
        return results

    def import_export(self, api: Clients) -> dict[str, Any]:
        started = time.perf_counter()
        info = api.downloader.import_source(DATASET, self.export_zip)
        seconds = time.perf_counter() - started
        self.say(f"[import] {self.export_zip.name} -> {DATASET} v{info.version}: {info.rows} rows "
                 f"in {seconds:.1f} s ({info.stats.get('duplicates_collapsed', 0)} duplicates collapsed)")
        return {"version": info.version, "rows": info.rows}

    def import_gbif_sample(self, api: Clients, path: Path) -> dict[str, Any]:
        """The real GBIF export (no internet here, so it is imported and summarised, not harvested)."""
        if not path.exists():
            raise DemoFailed(f"the GBIF sample {path} does not exist")
        info = api.downloader.import_source("psilocybe-semilanceata", path, species="Psilocybe semilanceata",
                                            family="Hymenogastraceae")
        summary = api.downloader.manifest("psilocybe-semilanceata", info.version).summary
        licences = ", ".join(f"{name} {count}" for name, count in list(summary["licenses"].items())[:3])
        self.say(f"[gbif sample] {path.name} -> psilocybe-semilanceata v{info.version}: {summary['rows']} photos "
                 f"of {summary['observations']} observations from {summary['domains']} domains; top licences: "
                 f"{licences}")
        return {"version": info.version, "rows": summary["rows"]}

    def harvest(self, api: Clients, version: int) -> dict[str, Any]:
        options = {"resize": {"max_side": 256, "quality": 90}, "concurrency": 64, "per_domain": 8,
                   "retries": 2, "backoff_s": 0.2, "total_timeout_s": 20, "read_timeout_s": 10}
        created = api.downloader.harvest(DATASET, version, options)
        view = self._follow("harvest", lambda: api.downloader.harvest_status(created.id), _harvest_progress)
        if view.state is not JobState.completed:
            raise DemoFailed(f"the harvest ended {view.state}: {view.error}")
        progress = view.progress
        self.say(f"[harvest] v{view.manifest_version}: {progress.ok} images stored, {progress.failed} failed, "
                 f"{progress.skipped} skipped, {progress.images_per_s or 0:.0f} images/s")
        return {"version": view.manifest_version, "ok": progress.ok}

    def curate(self, api: Clients, version: int) -> dict[str, Any]:
        first = self._curation(api, version, "scoring")
        domains = api.curator.domain_scores(DATASET, first.output_version).domains
        flagged = [row.domain for row in domains if row.recommendation == "blacklist"]
        for domain in flagged:
            api.curator.add_to_blacklist(domain, "the curator's recommendation (demo)", actor="demo")
        truth = _herbarium_domains(self.truth_path)
        self.say(f"[domains] {len(domains)} scored; blacklisted {len(flagged)} the curator recommended: "
                 f"{', '.join(flagged) or 'none'} (herbarium-like hosts in the fixture web: {', '.join(truth)})")
        final = self._curation(api, version, "curation") if flagged else first
        report = final.report
        if report is None:
            raise DemoFailed(f"curation {final.id} completed without a report")
        self.say(f"[curation] v{final.output_version}: {report.included} images kept, excluded "
                 + (", ".join(f"{count} {reason}" for reason, count in sorted(report.excluded.items())) or "none"))
        return {"version": final.output_version, "blacklisted": flagged, "report": report.model_dump()}

    def _curation(self, api: Clients, version: int, label: str) -> Curation:
        created = api.curator.curate(DATASET, version)
        view = self._follow(label, lambda: api.curator.curation(created.id), lambda _: "")
        if view.state is not JobState.completed:
            raise DemoFailed(f"the curation ended {view.state}: {view.error}")
        return view

    def train(self, api: Clients, version: int) -> dict[str, Any]:
        """A sweep over the learning rate (what people compare in the console's Sweeps view); the best run by
        validation accuracy is the model the demo promotes."""
        from services.trainer.presets import demo_spec

        spec = demo_spec(DATASET, version).model_dump(mode="json")
        spec["epochs"] = self.size.epochs
        spec["data"]["image_size"] = self.size.image_size
        spec["auto_promote"] = False  # the demo promotes the sweep's best run itself
        accepted = api.trainer.submit_sweep({"name": "demo learning rates", "base": spec,
                                             "grid": {"optimizer.learning_rate": list(self.size.learning_rates)}})
        started = time.perf_counter()
        for run in accepted.jobs:
            job = self._follow(f"train {run.job_id}", functools.partial(api.trainer.job, run.job_id),
                               lambda view: f"epoch {view.epoch}/{view.epochs or '?'}")
            if job.state is not JobState.completed:
                log = "\n".join(job.log_tail)
                raise DemoFailed(f"training {run.job_id} ended {job.state}: {job.error}\n{log}")
        sweep = api.trainer.sweep(accepted.sweep_id)
        if sweep.best_job_id is None:
            raise DemoFailed(f"sweep {accepted.sweep_id} has no complete run to promote")
        for row in sweep.rows:
            self.say(f"  {'*' if row.job_id == sweep.best_job_id else ' '} {row.job_id} {row.label}: validation "
                     f"accuracy {row.best_val_accuracy or 0:.2f}, test top-1 {row.test_top1 or 0:.2f}")
        best = api.trainer.job(sweep.best_job_id)
        classes = api.trainer.model(sweep.best_job_id).card["classes"]
        metrics = best.metrics
        self.say(f"[train] sweep {accepted.sweep_id}: {len(sweep.rows)} runs in {time.perf_counter() - started:.0f} s;"
                 f" best {best.job_id}: {len(classes)} classes, {best.epoch} epochs, test top-1 {metrics['top1']:.2f} "
                 f"(chance {1 / len(classes):.2f}), top-3 {metrics['top3']:.2f}")
        return {"model_id": best.job_id, "sweep_id": accepted.sweep_id, "metrics": metrics, "classes": classes}

    def predict(self, api: Clients, model_id: str) -> dict[str, Any]:
        api.trainer.promote(model_id)
        _wait_until_served(api.inference, model_id, 120)
        photos = _held_out_photos(self.size.classes, self.size.predictions)
        latencies, correct = [], 0
        for species, jpeg in photos:
            started = time.perf_counter()
            answer = api.inference.predict(jpeg)
            latencies.append((time.perf_counter() - started) * 1000)
            top = answer.predictions[0] if answer.predictions else None
            hit = top is not None and top.species == species
            correct += hit
            guess = f"{top.label} ({top.probability:.2f})" if top else "-"
            self.say(f"  photo of {species:<28} -> {answer.verdict:<10} {guess}{'  ✓' if hit else ''}")
        p50 = statistics.median(latencies)
        self.say(f"[predict] {correct}/{len(photos)} never-seen photos right at top-1, p50 {p50:.0f} ms per call "
                 f"(model {model_id}); {answer.safety_notice}")
        refused = 0
        others = _not_species_photos()
        for what, jpeg in others:
            other = api.inference.predict(jpeg)
            refused += not other.predictions
            relevance = other.relevance_score
            self.say(f"  {what:<36} -> {other.verdict:<15} photo of a fungus: "
                     f"{'-' if relevance is None else f'{relevance:.0%}'}")
        self.say(f"[predict] {refused}/{len(others)} photos that are no species it knows got no species name")
        return {"correct": correct, "total": len(photos), "p50_ms": p50, "refused": refused,
                "not_species": len(others)}

    def _follow(self, label: str, poll: Callable[[], Job], describe: Callable[[Job], str],
                timeout: float = 1800) -> Job:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            view = poll()
            if view.state in TERMINAL_STATES:
                if sys.stderr.isatty():
                    sys.stderr.write("\n")
                return view
            line = f"  {label}: {view.state} {describe(view)}".rstrip()
            if line != last and sys.stderr.isatty():
                sys.stderr.write("\r" + line.ljust(78))
                sys.stderr.flush()
            last = line
            time.sleep(0.5)
        raise DemoFailed(f"{label} did not finish within {timeout:.0f} s")


class Clients:
    """The four services' clients at the addresses the demo started them on, with its token."""

    def __init__(self, urls: dict[str, str], token: str) -> None:
        self.downloader = DownloaderClient(urls["downloader"], token, timeout_s=120)
        self.curator = CuratorClient(urls["curator"], token, timeout_s=120)
        self.trainer = TrainerClient(urls["trainer"], token, timeout_s=120)
        self.inference = InferenceClient(urls["inference"], token, timeout_s=120)

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for client in (self.downloader, self.curator, self.trainer, self.inference):
            client.close()


def _wait_until_served(inference: InferenceClient, model_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if inference.model().model_id == model_id:
                return
        except ServiceUnavailable:
            pass  # 503 until its watcher has loaded the promoted model
        time.sleep(0.5)
    raise DemoFailed(f"the inference service did not load {model_id} within {timeout:.0f} s")


def down(stack_dir: Path, clean: bool = False) -> list[str]:
    """Stop every process a demo started (by PID), then the local stack."""
    state_path = stack_dir / STATE_FILE
    stopped = []
    if state_path.exists():
        state = json.loads(state_path.read_text())
        for name, pid in state.get("pids", {}).items():
            terminate_pid(int(pid), name)
            stopped.append(name)
        state_path.unlink()
    LocalStack(stack_dir).down(clean=clean)
    return stopped


def _start_module(name: str, module: str, args: list[str], env: dict[str, str], logs: Path) -> ManagedProcess:
    from sporeprint.processes import spawn

    proc, log_path = spawn(name, [sys.executable, "-m", module, *args], env, logs)
    return ManagedProcess(name, proc, log_path, None, env)


def _harvest_progress(view: Harvest) -> str:
    progress = view.progress
    text = f"{progress.done}/{progress.total}" if progress.total else ""
    return text + (f" {progress.images_per_s:.0f} img/s" if progress.images_per_s else "")


def _herbarium_domains(truth_path: Path) -> list[str]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    truth = pq.read_table(truth_path, columns=["domain", "irrelevant"])
    by_domain = truth.group_by("domain").aggregate([("irrelevant", "mean")])
    heavy = by_domain.filter(pc.greater(by_domain.column("irrelevant_mean"), 0.5))
    return sorted(heavy.column("domain").to_pylist())


def _held_out_photos(classes: int, count: int) -> list[tuple[str, bytes]]:
    """Fresh renders (seeds the export never used) of the demo's species."""
    from fixtureweb import SpeciesCatalog

    catalog = SpeciesCatalog(classes, 7)
    photos = []
    for i in range(count):
        species = catalog.species[i % classes]
        image = catalog.render(species.index, 900_000 + i, 256)
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=90)
        photos.append((species.name, buffer.getvalue()))
    return photos


def _not_species_photos() -> list[tuple[str, bytes]]:
    """Photos /predict must not name a species for: a drawn herbarium sheet, noise, a flat colour."""
    import numpy as np
    from PIL import Image

    from fixtureweb.irrelevant import IrrelevantKind, render_irrelevant

    images = [("a herbarium sheet (drawn)", render_irrelevant(IrrelevantKind.HERBARIUM_SHEET, 900_001, 320)),
              ("random noise", Image.fromarray(np.random.default_rng(9).integers(0, 256, (240, 320, 3), np.uint8))),
              ("a flat grey picture", Image.new("RGB", (320, 240), (128, 128, 128)))]
    out = []
    for what, image in images:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=90)
        out.append((what, buffer.getvalue()))
    return out


def run_demo(
    stack_dir: Path, size: DemoSize, say: Callable[[str], None], gbif_sample: Path | None = None
) -> dict[str, Any]:
    demo = Demo(stack_dir, size, say, gbif_sample=gbif_sample)
    try:
        demo.start()
        return demo.run()
    except BaseException:
        logs = stack_dir / "demo" / "logs"
        say(f"the demo stopped early; logs of every process are in {logs}; `make down` stops what it started")
        raise


if os.environ.get("SPOREPRINT_DEMO_DEBUG"):
    logging.basicConfig(level=logging.DEBUG)
