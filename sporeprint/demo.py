"""``make demo``: the whole pipeline on one machine, without Docker.

It starts the local stack (a real S3 server and Redis), the fixture web (an offline stand-in for the image
hosts of a GBIF download), the four services, an RQ worker for harvests and curations, a training worker and
the console; then imports a GBIF-shaped export, harvests it, scores the domains and blacklists the ones the
curator recommends, curates, trains a small model on the CPU, promotes it and asks ``/predict`` about photos
the model has never seen. Each step prints one line with its numbers. ``sporeprint demo down`` (``make down``)
stops every process it started, by PID.
"""

from __future__ import annotations

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
from typing import Any

import httpx

from shared.processes import ManagedProcess, start_service, start_worker
from shared.queue import TERMINAL_STATES, JobState
from shared.stack import LocalStack, StackError, free_port, terminate_pid, wait_for_port

logger = logging.getLogger(__name__)

STATE_FILE = "demo.json"
DATASET = "fixture-fungi"
SERVICES = {
    "downloader": "services.downloader.main:app",
    "curator": "services.curator.main:app",
    "trainer": "services.trainer.main:app",
    "inference": "services.inference.main:app",
}


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


CI_SIZE = DemoSize(photos=600, classes=4, domains=6, herbarium=1, epochs=10, predictions=6)


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
        self.say(f"[stack] S3 server http://{stack.s3_endpoint}, Redis {stack.redis_url} "
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
        self._track(start_worker("worker-harvest-curate", ["harvest", "curate"], env, logs))
        self._track(_start_module("worker-train", "services.trainer.worker", ["train"], env, logs))
        self.say(f"[services] downloader, curator, trainer, inference, console and 2 RQ workers up "
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
        with httpx.Client(timeout=httpx.Timeout(120, connect=5), trust_env=False) as client:
            api = Api(client, self.urls, self.token)
            if self.gbif_sample is not None:
                results["gbif_sample"] = self.import_gbif_sample(api, self.gbif_sample)
            results["import"] = self.import_export(api)
            results["harvest"] = self.harvest(api, results["import"]["version"])
            results["curation"] = self.curate(api, results["harvest"]["version"])
            results["training"] = self.train(api, results["curation"]["version"])
            results["predict"] = self.predict(api, results["training"]["model_id"])
        self.say(f"[console] {self.urls['console']}  (API token for changes: {self.token})")
        self.say("[stop] make down   (stops every process the demo started, by PID)")
        return results

    def import_export(self, api: Api) -> dict[str, Any]:
        started = time.perf_counter()
        with open(self.export_zip, "rb") as export:
            info = api.call("POST", "downloader", "/manifests", data={"dataset": DATASET},
                            files={"file": (self.export_zip.name, export, "application/zip")})
        seconds = time.perf_counter() - started
        self.say(f"[import] {self.export_zip.name} -> {DATASET} v{info['version']}: {info['rows']} rows "
                 f"in {seconds:.1f} s ({info['stats'].get('duplicates_collapsed', 0)} duplicates collapsed)")
        return {"version": info["version"], "rows": info["rows"]}

    def import_gbif_sample(self, api: Api, path: Path) -> dict[str, Any]:
        """The real GBIF export (no internet here, so it is imported and summarised, not harvested)."""
        if not path.exists():
            raise DemoFailed(f"the GBIF sample {path} does not exist")
        with open(path, "rb") as sample:
            info = api.call("POST", "downloader", "/manifests",
                            data={"dataset": "psilocybe-semilanceata", "species": "Psilocybe semilanceata",
                                  "family": "Hymenogastraceae"},
                            files={"file": (path.name, sample, "text/plain")})
        detail = api.call("GET", "downloader", f"/manifests/psilocybe-semilanceata/{info['version']}")
        summary = detail["summary"]
        licences = ", ".join(f"{name} {count}" for name, count in list(summary["licenses"].items())[:3])
        self.say(f"[gbif sample] {path.name} -> psilocybe-semilanceata v{info['version']}: {summary['rows']} photos "
                 f"of {summary['observations']} observations from {summary['domains']} domains; top licences: "
                 f"{licences}")
        return {"version": info["version"], "rows": summary["rows"]}

    def harvest(self, api: Api, version: int) -> dict[str, Any]:
        options = {"resize": {"max_side": 256, "quality": 90}, "concurrency": 64, "per_domain": 8,
                   "retries": 2, "backoff_s": 0.2, "total_timeout_s": 20, "read_timeout_s": 10}
        created = api.call("POST", "downloader", "/harvests",
                           json={"dataset": DATASET, "version": version, "options": options})
        view = self._follow("harvest", lambda: api.call("GET", "downloader", f"/harvests/{created['id']}"),
                            _harvest_progress)
        if view["state"] != JobState.completed:
            raise DemoFailed(f"the harvest ended {view['state']}: {view.get('error')}")
        progress = view["progress"]
        ok = int(progress["ok"])
        self.say(f"[harvest] v{view['manifest_version']}: {ok} images stored, {progress['failed']} failed, "
                 f"{progress['skipped']} skipped, {float(progress['images_per_s']):.0f} images/s")
        return {"version": view["manifest_version"], "ok": ok}

    def curate(self, api: Api, version: int) -> dict[str, Any]:
        first = self._curation(api, version, "scoring")
        scores = api.call("GET", "curator", "/domains",
                          params={"dataset": DATASET, "version": first["output_version"]})
        domains = scores["domains"]
        flagged = [row["domain"] for row in domains if row["recommendation"] == "blacklist"]
        for domain in flagged:
            api.call("PUT", "curator", f"/blacklist/{domain}",
                     json={"reason": "the curator's recommendation (demo)", "actor": "demo"})
        truth = _herbarium_domains(self.truth_path)
        self.say(f"[domains] {len(domains)} scored; blacklisted {len(flagged)} the curator recommended: "
                 f"{', '.join(flagged) or 'none'} (herbarium-like hosts in the fixture web: {', '.join(truth)})")
        final = self._curation(api, version, "curation") if flagged else first
        report = final["report"]
        excluded = report["excluded"]
        self.say(f"[curation] v{final['output_version']}: {report['included']} images kept, excluded "
                 + (", ".join(f"{count} {reason}" for reason, count in sorted(excluded.items())) or "none"))
        return {"version": final["output_version"], "blacklisted": flagged, "report": report}

    def _curation(self, api: Api, version: int, label: str) -> dict[str, Any]:
        created = api.call("POST", "curator", "/curations", json={"dataset": DATASET, "version": version})
        run_id = created["id"]
        view = self._follow(label, lambda: api.call("GET", "curator", f"/curations/{run_id}"), lambda v: "")
        if view["state"] != JobState.completed:
            raise DemoFailed(f"the curation ended {view['state']}: {view.get('error')}")
        return view

    def train(self, api: Api, version: int) -> dict[str, Any]:
        from services.trainer.presets import demo_spec

        spec = demo_spec(DATASET, version).model_dump(mode="json")
        spec["epochs"] = self.size.epochs
        spec["data"]["image_size"] = self.size.image_size
        accepted = api.call("POST", "trainer", "/jobs", json=spec)
        started = time.perf_counter()
        job = self._follow("train", lambda: api.call("GET", "trainer", f"/jobs/{accepted['job_id']}"),
                           lambda v: f"epoch {v.get('epoch', 0)}/{v.get('epochs') or '?'}")
        if job["state"] != JobState.completed:
            log = "\n".join(job.get("log_tail", []))
            raise DemoFailed(f"training ended {job['state']}: {job.get('error')}\n{log}")
        metrics = job["metrics"]
        classes = accepted["classes"]
        self.say(f"[train] {accepted['model_id']}: {len(classes)} classes, {job['epoch']} epochs in "
                 f"{time.perf_counter() - started:.0f} s, test top-1 {metrics['top1']:.2f} "
                 f"(chance {1 / len(classes):.2f}), top-3 {metrics['top3']:.2f}")
        return {"model_id": accepted["model_id"], "metrics": metrics, "classes": classes}

    def predict(self, api: Api, model_id: str) -> dict[str, Any]:
        api.call("POST", "trainer", f"/models/{model_id}/promote")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            served = api.get_optional("inference", "/model")
            if served and served.get("model_id") == model_id:
                break
            time.sleep(0.5)
        else:
            raise DemoFailed(f"the inference service did not load {model_id} within 120 s")
        photos = _held_out_photos(self.size.classes, self.size.predictions)
        latencies, correct = [], 0
        for species, jpeg in photos:
            started = time.perf_counter()
            answer = api.call("POST", "inference", "/predict", files={"file": ("photo.jpg", jpeg, "image/jpeg")})
            latencies.append((time.perf_counter() - started) * 1000)
            top = answer["predictions"][0] if answer["predictions"] else None
            hit = top is not None and top["species"] == species
            correct += hit
            guess = f"{top['label']} ({top['probability']:.2f})" if top else "-"
            self.say(f"  photo of {species:<28} -> {answer['verdict']:<10} {guess}{'  ✓' if hit else ''}")
        p50 = statistics.median(latencies)
        self.say(f"[predict] {correct}/{len(photos)} never-seen photos right at top-1, p50 {p50:.0f} ms per call "
                 f"(model {model_id}); {answer['safety_notice']}")
        refused = 0
        others = _not_species_photos()
        for what, jpeg in others:
            other = api.call("POST", "inference", "/predict", files={"file": ("photo.jpg", jpeg, "image/jpeg")})
            refused += not other["predictions"]
            relevance = other.get("relevance_score")
            self.say(f"  {what:<36} -> {other['verdict']:<15} photo of a fungus: "
                     f"{'-' if relevance is None else f'{relevance:.0%}'}")
        self.say(f"[predict] {refused}/{len(others)} photos that are no species it knows got no species name")
        return {"correct": correct, "total": len(photos), "p50_ms": p50, "refused": refused,
                "not_species": len(others)}

    def _follow(self, label: str, poll: Callable[[], dict[str, Any]],
                describe: Callable[[dict[str, Any]], str], timeout: float = 1800) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            view = poll()
            state = str(view.get("state", ""))
            if state in TERMINAL_STATES:
                if sys.stderr.isatty():
                    sys.stderr.write("\n")
                return view
            line = f"  {label}: {state} {describe(view)}".rstrip()
            if line != last and sys.stderr.isatty():
                sys.stderr.write("\r" + line.ljust(78))
                sys.stderr.flush()
            last = line
            time.sleep(0.5)
        raise DemoFailed(f"{label} did not finish within {timeout:.0f} s")


class Api:
    """The services' HTTP APIs as the demo uses them: errors become DemoFailed with the service's detail."""

    def __init__(self, client: httpx.Client, urls: dict[str, str], token: str) -> None:
        self.client = client
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        url = self.urls[service] + path
        try:
            response = self.client.request(method, url, headers=self.headers, **kwargs)
        except httpx.HTTPError as exc:
            raise DemoFailed(f"{service} did not answer {method} {path}: {exc}") from None
        if response.status_code >= 400:
            raise DemoFailed(f"{service} answered {response.status_code} to {method} {path}: {response.text[:500]}")
        return response.json()

    def get_optional(self, service: str, path: str) -> Any:
        try:
            response = self.client.get(self.urls[service] + path)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None


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
    from shared.processes import spawn

    proc, log_path = spawn(name, [sys.executable, "-m", module, *args], env, logs)
    return ManagedProcess(name, proc, log_path, None, env)


def _harvest_progress(view: dict[str, Any]) -> str:
    progress = view.get("progress", {})
    done, total = progress.get("done"), progress.get("total")
    rate = progress.get("images_per_s")
    text = f"{done}/{total}" if done is not None and total else ""
    return text + (f" {float(rate):.0f} img/s" if rate else "")



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
