"""Serving benchmark: a naive FastAPI endpoint (``model.predict`` per request) vs sporeprint's /predict,
with and without the relevance gate.

All run under uvicorn as subprocesses on loopback, on the same small classifier (MobileNetV3-Small, 128 px,
20 classes, random weights: speed does not depend on the weights). An aiohttp load generator posts the
same JPEG at concurrency 1, 8 and 32 and records throughput, p50/p99 latency and the servers' peak RSS.
sporeprint runs twice in the same invocation:

- gate off (``SPOREPRINT_INFERENCE_RELEVANCE_GATE=false``, "before" the gate): the classifier alone;
- gate on (the default, "after"): every /predict also runs the relevance gate (shared/relevance/gate.py),
  an ImageNet EfficientNet-Lite0 at 224 px (a LiteRT/XNNPACK interpreter, one photo per call), read in each
  upload's decoding thread beside the batched classifier. The gate is a second, much bigger CNN per photo,
  so it, not the classifier, sets the cost of a request.

Both sporeprint runs share one ``SPOREPRINT_WORK_DIR`` (a temp dir made once per invocation), where the
gate's weights are converted once (about 10 s) before anything is timed. The bare references are in-process
calls on the same image: the classifier's ``tf.function``, and the gate's interpreter.

    .venv/bin/python bench/serve.py            # writes bench/results/serve.md (about 4 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from fastapi import FastAPI, File, UploadFile
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMAGE_SIZE = 128
N_CLASSES = 20
MODEL_ENV = "SPOREPRINT_BENCH_MODEL"
GATE_ENV = "SPOREPRINT_INFERENCE_RELEVANCE_GATE"
NAIVE, GATE_OFF, GATE_ON = "naive", "sporeprint, gate off", "sporeprint, gate on"
CONCURRENCY = (1, 8, 32)
# Requests per concurrency level: the naive server manages only a few requests a second.
NAIVE_REQUESTS = {1: 16, 8: 32, 32: 64}
SERVE_REQUESTS = {1: 200, 8: 400, 32: 800}


# The naive implementation, as most tutorials write it: decode, resize, model.predict per request.
@asynccontextmanager
async def _naive_lifespan(app: FastAPI) -> AsyncIterator[None]:
    import keras

    app.state.model = keras.models.load_model(os.environ[MODEL_ENV], compile=False)
    yield


def create_naive_app() -> FastAPI:
    app = FastAPI(lifespan=_naive_lifespan)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI's idiom
        image = Image.open(io.BytesIO(await file.read())).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE))
        probs = app.state.model.predict(np.asarray(image, np.float32)[None], verbose=0)[0]
        top = np.argsort(-probs)[:5]
        return {"predictions": [{"index": int(i), "probability": float(probs[i])} for i in top]}

    return app


naive_app = create_naive_app()


def build_model(path: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV3Small(
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), weights=None, include_top=False, include_preprocessing=True
    )
    model = keras.Sequential([
        keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)), backbone, keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(N_CLASSES, activation="softmax"),
    ])
    model.save(path)
    return path


def sample_jpeg() -> bytes:
    from fixtureweb.species import SpeciesCatalog

    buffer = io.BytesIO()
    SpeciesCatalog(N_CLASSES).render(3, seed=1, size=320).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# p50 ms (model only; decode + model) of the bare call, by TensorFlow thread setting
Bare = dict[str, tuple[float, float]]


def _run_bare(args: list[str]) -> list[float]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(f"bare measurement {args[0]} failed:\n{out.stderr[-4000:]}")
    return [float(x) for x in json.loads(out.stdout.strip().splitlines()[-1])]


def bare_call(model_path: Path, jpeg: bytes, intra_op_threads: int, calls: int = 150) -> tuple[float, float]:
    """p50 ms of an in-process ``tf.function`` call on the image (model only; decode + model), measured in a
    fresh process (TensorFlow's thread count is fixed once it starts) with ``intra_op_threads`` (0: TF's
    default, one per core)."""
    image_file = model_path.with_suffix(".jpg")
    image_file.write_bytes(jpeg)
    model_only, with_decode = _run_bare(["bare", str(model_path), str(image_file), str(intra_op_threads), str(calls)])
    return model_only, with_decode


def bare_gate(work_dir: Path, jpeg: bytes, intra_op_threads: int, calls: int = 60) -> tuple[float, float, float]:
    """The relevance gate alone, in a fresh process on ``intra_op_threads``: p50 ms of its model on one image,
    its decode-side extras for one photo (224 px resize + image statistics), and ms per image in a batch of 32."""
    image_file = work_dir / "bench-gate.jpg"
    image_file.write_bytes(jpeg)
    one, extras, per_image_32 = _run_bare(["bare-gate", str(work_dir), str(image_file), str(intra_op_threads),
                                           str(calls)])
    return one, extras, per_image_32


def _bare_main(model_path: str, image_file: str, intra_op_threads: int, calls: int) -> None:
    import keras
    import tensorflow as tf

    from services.inference.images import decode_for_model
    from services.inference.model import compile_predict

    if intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    jpeg = Path(image_file).read_bytes()
    model = keras.models.load_model(model_path, compile=False)
    predict = compile_predict(model, IMAGE_SIZE, logits=False)  # the bench model outputs softmax
    image, _ = decode_for_model(jpeg, IMAGE_SIZE, 10**8, 10**8)
    for _ in range(10):
        predict(tf.constant(image[None]))
    model_only, with_decode = [], []
    for _ in range(calls):
        started = time.perf_counter()
        predict(tf.constant(image[None]))
        model_only.append(time.perf_counter() - started)
        started = time.perf_counter()
        decoded, _ = decode_for_model(jpeg, IMAGE_SIZE, 10**8, 10**8)
        predict(tf.constant(decoded[None]))
        with_decode.append(time.perf_counter() - started)
    print(json.dumps([statistics.median(model_only) * 1000, statistics.median(with_decode) * 1000]))


def _bare_gate_main(work_dir: str, image_file: str, intra_op_threads: int, calls: int) -> None:
    import tensorflow as tf

    from services.inference.images import open_photo
    from shared.relevance.gate import load_gate
    from shared.relevance.pretrained import LITE0
    from shared.relevance.stats import image_features

    if intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    jpeg = Path(image_file).read_bytes()
    gate = load_gate(LITE0, work_dir)
    photo = open_photo(jpeg, 10**8, 10**8)
    one = gate.input_for(photo)[None]  # the gate's own resize, as /predict's decoding does
    stats = image_features(photo)[None]
    batch, batch_stats = np.repeat(one, 32, axis=0), np.repeat(stats, 32, axis=0)
    for _ in range(5):
        gate.read(one, stats)
        gate.read(batch, batch_stats)
    single, extras, batched = [], [], []
    for i in range(calls):
        started = time.perf_counter()
        gate.read(one, stats)
        single.append(time.perf_counter() - started)
        started = time.perf_counter()
        gate.input_for(photo)
        image_features(photo)
        extras.append(time.perf_counter() - started)
        if i % 6 == 0:
            started = time.perf_counter()
            gate.read(batch, batch_stats)
            batched.append((time.perf_counter() - started) / 32)
    print(json.dumps([statistics.median(single) * 1000, statistics.median(extras) * 1000,
                      statistics.median(batched) * 1000]))


@dataclass
class Run:
    server: str
    concurrency: int
    requests: int
    errors: int
    wall_s: float
    latencies_ms: list[float]
    mean_batch: float | None = None  # sporeprint: images per model call during the run (its /metrics)

    @property
    def throughput(self) -> float:
        return self.requests / self.wall_s

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


async def load(url: str, jpeg: bytes, concurrency: int, total: int, server: str) -> Run:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    remaining = total

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            form = aiohttp.FormData()
            form.add_field("file", jpeg, filename="photo.jpg", content_type="image/jpeg")
            started = time.perf_counter()
            async with session.post(url, data=form) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - started) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
        await asyncio.gather(*(worker(session) for _ in range(min(concurrency, 4))))  # warm-up
        latencies.clear()
        errors = 0
        remaining = total
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return Run(server, concurrency, total, errors, wall, latencies)


class PeakRss:
    """Samples a process's RSS every 100 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def check_gate(url: str, jpeg: bytes, gate_on: bool) -> None:
    """One /predict: its answer must carry the gate's relevance score exactly when the gate is on."""
    import httpx

    response = httpx.post(f"{url}/predict", files={"file": ("photo.jpg", jpeg, "image/jpeg")}, timeout=60)
    response.raise_for_status()
    score = response.json().get("relevance_score")
    if (score is not None) != gate_on:
        raise RuntimeError(f"gate {'on' if gate_on else 'off'} but /predict answered relevance_score={score!r}")


def batch_counts(url: str) -> tuple[float, float]:
    """(images, model calls) so far, from sporeprint's batch-size histogram on /metrics."""
    import httpx

    values = {"sum": 0.0, "count": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        for key in values:
            if line.startswith(f"sporeprint_inference_batch_size_{key} "):
                values[key] = float(line.split()[-1])
    return values["sum"], values["count"]


def run_server(name: str, label: str, app: str, env: dict[str, str], log_dir: Path, jpeg: bytes,
               requests: dict[int, int], ready_path: str = "/health",
               bare: Callable[[], Any] | None = None, gate_on: bool | None = None,
               ) -> tuple[list[Run], int, list[Any]]:
    """Run the load at each concurrency; ``bare`` (if given) is measured just before and after concurrency 1,
    so the reference sees the same machine load as the served run (the machine is shared and noisy).
    ``gate_on`` (sporeprint only): check that /predict does or does not run the relevance gate."""
    from sporeprint.processes import start_service

    service = start_service(name, app, {**env, "PYTHONPATH": str(ROOT)}, log_dir, ready_path=ready_path,
                            timeout=180)
    rss = PeakRss(service.pid)
    bare_runs: list[Any] = []
    runs = []
    try:
        if gate_on is not None:
            check_gate(service.url, jpeg, gate_on)
        for c in CONCURRENCY:
            if bare and c == 1:
                bare_runs.append(bare())
            before = batch_counts(service.url) if gate_on is not None else None
            run = asyncio.run(load(f"{service.url}/predict", jpeg, c, requests[c], label))
            if before is not None:  # includes load()'s short warm-up: a few requests in thousands
                images, calls = (a - b for a, b in zip(batch_counts(service.url), before, strict=True))
                run.mean_batch = images / calls if calls else None
            runs.append(run)
            if bare and c == 1:
                bare_runs.append(bare())
    finally:
        peak = rss.stop()
        service.stop()
    return runs, peak, bare_runs


def report(runs: list[Run], rss: dict[str, int], bare_runs: list[Bare], gate_bare: tuple[float, float, float],
           threads: int, out: Path) -> str:
    # imported here: uvicorn imports this module as bench.serve for the naive app, without bench/ on sys.path
    from machine import cpu_model  # bench/ is on sys.path when a script runs

    by = {(r.server, r.concurrency): r for r in runs}
    naive32 = by[(NAIVE, 32)]
    off1, off32, on1, on32 = by[(GATE_OFF, 1)], by[(GATE_OFF, 32)], by[(GATE_ON, 1)], by[(GATE_ON, 32)]
    speedup_on, speedup_off = on32.throughput / naive32.throughput, off32.throughput / naive32.throughput
    bare = {name: (statistics.mean(b[name][0] for b in bare_runs), statistics.mean(b[name][1] for b in bare_runs))
            for name in bare_runs[0]}
    p50 = off1.percentile(50)
    ratio_default, ratio_same = p50 / bare["default"][0], p50 / bare["same"][0]
    gate_one, gate_extras, gate_per_image = gate_bare
    added_p50 = on1.percentile(50) - p50
    throughput_cost = off32.throughput / on32.throughput
    # the gate reads in the decoding threads, one photo each, on every core: its own cost alone bounds throughput
    model_bound = psutil.cpu_count() * 1000 / gate_per_image

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = [
        "# Serving benchmark: naive `model.predict` per request vs sporeprint `/predict`, without and with the "
        "relevance gate",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {psutil.cpu_count()} cores ({cpu_model()}), "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} at the end.",
        f"Classifier: MobileNetV3-Small, {IMAGE_SIZE} px, {N_CLASSES} classes (random weights, softmax output, "
        "card `output: probabilities`); the same .keras file for every server. Each request posts the same 320 px "
        "JPEG (multipart) over loopback; every server runs under uvicorn (one worker). sporeprint: dynamic batching "
        "(max batch 32, max wait 5 ms), one compiled `tf.function`, decoding off the event loop, TensorFlow on "
        f"{threads} intra-op thread(s) (its setting `SPOREPRINT_INFERENCE_TF_INTRA_OP_THREADS`, default half the "
        "cores). The naive server keeps TensorFlow's defaults, as the obvious implementation does.",
        "",
        "sporeprint runs twice, one after the other in the same invocation: **gate off** "
        f"(`{GATE_ENV}=false`, before the gate) and **gate on** (the default since the gate, after). With the "
        "gate every /predict also runs the relevance gate (`shared/relevance/gate.py`): an ImageNet "
        "EfficientNet-Lite0 at 224 px as a LiteRT (XNNPACK) interpreter, one thread per read, in the upload's "
        "decoding thread beside the batched classifier, plus a second resize (to 224 px) per photo (the image "
        "statistics only when a probe is in force; none is here). Its weights were converted once into the "
        "shared `SPOREPRINT_WORK_DIR` before any timing.",
        "",
        "| server | concurrency | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) | mean batch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        batch = "-" if run.mean_batch is None else f"{run.mean_batch:.1f}"
        lines.append(f"| {run.server} | {run.concurrency} | {run.requests} | {run.errors} | {run.throughput:.1f} | "
                     f"{run.percentile(50):.1f} | {run.percentile(99):.1f} | {batch} |")
    lines += [
        "",
        "## What the relevance gate costs",
        "",
        "| sporeprint /predict | gate off (before) | gate on (after) | change |",
        "|---|---:|---:|---:|",
        f"| p50 at concurrency 1 (ms) | {p50:.1f} | {on1.percentile(50):.1f} | +{added_p50:.1f} ms "
        f"({on1.percentile(50) / p50:.1f}x) |",
        f"| p99 at concurrency 1 (ms) | {off1.percentile(99):.1f} | {on1.percentile(99):.1f} | "
        f"{on1.percentile(99) / off1.percentile(99):.1f}x |",
        f"| throughput at concurrency 32 (req/s) | {off32.throughput:.1f} | {on32.throughput:.1f} | "
        f"{1 / throughput_cost:.2f}x ({throughput_cost:.1f}x fewer) |",
        f"| p99 at concurrency 32 (ms) | {off32.percentile(99):.1f} | {on32.percentile(99):.1f} | "
        f"{on32.percentile(99) / off32.percentile(99):.1f}x |",
        f"| peak RSS (MiB) | {rss[GATE_OFF] / 2**20:.0f} | {rss[GATE_ON] / 2**20:.0f} | "
        f"+{(rss[GATE_ON] - rss[GATE_OFF]) / 2**20:.0f} MiB |",
        "",
        f"Why: the gate is a second CNN per photo, and a much bigger one than the classifier. In-process, on "
        f"{threads} thread(s), EfficientNet-Lite0 at 224 px takes **{gate_one:.1f} ms** for one photo (the "
        f"classifier at {IMAGE_SIZE} px: {bare['same'][0]:.1f} ms, {gate_one / bare['same'][0]:.1f}x; read one "
        f"photo at a time, {gate_per_image:.1f} ms each over 32); its decode-side extras (the 224 px resize, and "
        f"the statistics a probe would need) add {gate_extras:.1f} ms. At concurrency 1 the gate adds "
        f"{added_p50:.1f} ms to the p50, against {gate_one:.1f} ms for its bare call plus the resize. Under load "
        f"it runs in the decoding threads, on every core, beside the model thread: at concurrency 32 "
        f"{on32.throughput:.0f} req/s were measured against {off32.throughput:.0f} without the gate; "
        f"{psutil.cpu_count()} cores at {gate_per_image:.1f} ms of gate per photo alone would cap it near "
        f"{model_bound:.0f} req/s, before HTTP, multipart, decoding, the classifier and the load generator "
        "(on the same cores).",
        "",
        "Bare in-process `tf.function` call of the classifier on the same image (p50; the mean of two "
        "measurements in fresh processes, just before and just after sporeprint's gate-off concurrency-1 run, "
        "with the server idle):",
        "",
        "| TensorFlow threads | model only (ms) | JPEG decode + resize + model (ms) |",
        "|---|---:|---:|",
        f"| default (one per core) | {bare['default'][0]:.1f} | {bare['default'][1]:.1f} |",
        f"| {threads}, as the server | {bare['same'][0]:.1f} | {bare['same'][1]:.1f} |",
        "",
        f"Bare relevance gate (EfficientNet-Lite0, 224 px, {threads} thread(s), p50 in a fresh process just before "
        "sporeprint's gate-on run, the server idle):",
        "",
        "| gate alone | ms |",
        "|---|---:|",
        f"| one image, model only | {gate_one:.1f} |",
        f"| per image, batch of 32 | {gate_per_image:.1f} |",
        f"| decode-side extras per photo (224 px resize + image statistics) | {gate_extras:.1f} |",
        "",
        "| peak RSS | MiB |",
        "|---|---:|",
        *(f"| {name} | {peak / 2**20:.0f} |" for name, peak in rss.items()),
        "",
        "## Targets",
        f"- concurrency 32, **with the gate** (what /predict serves by default): sporeprint {on32.throughput:.1f} "
        f"req/s vs naive {naive32.throughput:.1f} req/s = **{speedup_on:.1f}x** (target >= 4x: "
        f"{verdict(speedup_on >= 4)}); p99 {on32.percentile(99):.0f} ms vs {naive32.percentile(99):.0f} ms "
        f"(target lower: {verdict(on32.percentile(99) < naive32.percentile(99))}). The naive server runs the "
        "classifier only, so this compares sporeprint doing two CNNs per photo against naive doing one.",
        f"- concurrency 32, gate off (the classifier alone, as before the gate): {off32.throughput:.1f} req/s = "
        f"**{speedup_off:.1f}x** the naive server ({verdict(speedup_off >= 4)}); p99 {off32.percentile(99):.0f} ms "
        f"({verdict(off32.percentile(99) < naive32.percentile(99))}).",
        f"- concurrency 1, gate off: sporeprint p50 {p50:.1f} ms = **{ratio_default:.2f}x** the bare call with "
        f"TensorFlow's default threads (target <= 1.3x: {verdict(ratio_default <= 1.3)}); "
        f"**{ratio_same:.2f}x** the bare call on the server's {threads} thread(s) "
        f"({verdict(ratio_same <= 1.3)}), {p50 / bare['same'][1]:.2f}x that call with decoding. "
        f"The second is the serving overhead: {p50 - bare['same'][0]:.1f} ms per request of HTTP, multipart "
        "parsing, decoding and thread hand-offs. With the gate on the p50 is "
        f"{on1.percentile(50):.1f} ms: {on1.percentile(50) / (bare['same'][1] + gate_one + gate_extras):.2f}x the "
        "bare classifier call with decoding plus the bare gate call and its extras.",
        "",
        "Command: `.venv/bin/python bench/serve.py`",
        "",
    ]
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def print_runs(runs: list[Run]) -> None:
    for run in runs:
        print(f"{run.server:>22} c={run.concurrency:<3} {run.throughput:7.1f} req/s  "
              f"p50 {run.percentile(50):7.1f} ms  p99 {run.percentile(99):7.1f} ms  errors {run.errors}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve.md")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts (0.2 for a smoke run)")
    parser.add_argument("--sporeprint-only", action="store_true", help="skip the naive server (no report file)")
    args = parser.parse_args()
    os.chdir(ROOT)

    from shared.cpus import available_cpus
    from shared.registry import ClassLabel, ModelCard, ModelRegistry, ModelStatus, model_key
    from shared.relevance.pretrained import LITE0, load_pretrained
    from shared.settings import Settings
    from shared.storage import ObjectStore
    from sporeprint.stack import LocalStack

    naive_requests = {c: max(8, int(n * args.scale)) for c, n in NAIVE_REQUESTS.items()}
    serve_requests = {c: max(8, int(n * args.scale)) for c, n in SERVE_REQUESTS.items()}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        model_path = build_model(work / "model.keras")
        jpeg = sample_jpeg()
        threads = max(1, available_cpus() // 2)  # as the server does by default
        # One work dir for every sporeprint run: the gate's weights are converted here once, now, untimed.
        work_dir = work / "sporeprint-work"
        load_pretrained(LITE0, work_dir / "relevance")

        def measure_bare() -> Bare:
            return {"default": bare_call(model_path, jpeg, 0), "same": bare_call(model_path, jpeg, threads)}

        gate_bare: list[tuple[float, float, float]] = []

        def measure_gate() -> tuple[float, float, float]:
            if not gate_bare:  # once, before concurrency 1 (the hook also runs after it)
                gate_bare.append(bare_gate(work_dir, jpeg, threads))
            return gate_bare[0]

        stack = LocalStack(work / "stack")
        state = stack.up()
        try:
            env = {**state.env(), "SPOREPRINT_ENVIRONMENT": "development", "SPOREPRINT_S3_BUCKET": "bench-serve",
                   "SPOREPRINT_INFERENCE_MAX_BATCH_SIZE": "32", "SPOREPRINT_INFERENCE_MAX_WAIT_MS": "5",
                   "SPOREPRINT_LOG_LEVEL": "WARNING", "SPOREPRINT_INFERENCE_TF_INTRA_OP_THREADS": str(threads),
                   "SPOREPRINT_WORK_DIR": str(work_dir)}
            store = ObjectStore.from_settings(Settings(
                s3_endpoint=state.s3_endpoint, s3_access_key=state.access_key, s3_secret_key=state.secret_key,
                s3_bucket="bench-serve",
            ))
            store.ensure_bucket()
            store.put_file(model_key("bench-mnv3", "model.keras"), model_path)
            registry = ModelRegistry(store)
            card = ModelCard(
                model_id="bench-mnv3", status=ModelStatus.complete, created_at=datetime.now(UTC), dataset="bench",
                manifest_version=1, backbone="MobileNetV3Small", image_size=IMAGE_SIZE,
                classes=[ClassLabel(index=i, name=f"Genus{i // 3} species{i}", genus=f"Genus{i // 3}")
                         for i in range(N_CLASSES)],
                output="probabilities",  # the bench model ends in a softmax (the smoke test checks it)
                openset=None,  # no kNN bank: no open-set score, as for a model from before open-set scoring
                artifacts=["model.keras", "card.json"],
            )
            registry.save_card(card)
            assert registry.card("bench-mnv3") == card  # the stored card validates against ModelCard
            registry.promote("bench-mnv3", by="bench")

            runs, rss = [], {}
            off_runs, rss[GATE_OFF], bare_runs = run_server(
                "bench-sporeprint-gate-off", GATE_OFF, "services.inference.main:app", {**env, GATE_ENV: "false"},
                work / "logs", jpeg, serve_requests, ready_path="/ready", bare=measure_bare, gate_on=False,
            )
            runs += off_runs
            print_runs(off_runs)
            on_runs, rss[GATE_ON], _ = run_server(
                "bench-sporeprint-gate-on", GATE_ON, "services.inference.main:app", {**env, GATE_ENV: "true"},
                work / "logs", jpeg, serve_requests, ready_path="/ready", bare=measure_gate, gate_on=True,
            )
            runs += on_runs
            print_runs(on_runs)
            if args.sporeprint_only:
                print(f"bare classifier {bare_runs}; bare gate {gate_bare}")
                return
            naive_runs, rss[NAIVE], _ = run_server("bench-naive", NAIVE, "bench.serve:naive_app",
                                                   {MODEL_ENV: str(model_path)}, work / "logs", jpeg, naive_requests)
            runs += naive_runs
            print_runs(naive_runs)
        except BaseException:
            for log in sorted((work / "logs").glob("*.log")):
                print(f"--- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]),
                      file=sys.stderr)
            raise
        finally:
            stack.down(clean=True)
    print(report(runs, rss, bare_runs, gate_bare[0], threads, args.out))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "bare":
        _bare_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "bare-gate":
        _bare_gate_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
