"""Serving benchmark: a naive FastAPI endpoint (``model.predict`` per request) vs sporeprint's /predict.

Both run under uvicorn as subprocesses on loopback, on the same small model (MobileNetV3-Small, 128 px,
20 classes, random weights: speed does not depend on the weights). An aiohttp load generator posts the
same JPEG at concurrency 1, 8 and 32 and records throughput, p50/p99 latency and the servers' peak RSS.
The bare reference is an in-process ``tf.function`` call on the same image.

    .venv/bin/python bench/serve.py            # writes bench/results/serve.md (about 3 minutes)
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


def bare_call(model_path: Path, jpeg: bytes, intra_op_threads: int, calls: int = 150) -> tuple[float, float]:
    """p50 ms of an in-process ``tf.function`` call on the image (model only; decode + model), measured in a
    fresh process (TensorFlow's thread count is fixed once it starts) with ``intra_op_threads`` (0: TF's
    default, one per core)."""
    image_file = model_path.with_suffix(".jpg")
    image_file.write_bytes(jpeg)
    out = subprocess.run([sys.executable, __file__, "bare", str(model_path), str(image_file), str(intra_op_threads),
                          str(calls)], capture_output=True, text=True, check=True, cwd=ROOT)
    model_only, with_decode = json.loads(out.stdout.strip().splitlines()[-1])
    return model_only, with_decode


def _bare_main(model_path: str, image_file: str, intra_op_threads: int, calls: int) -> None:
    import keras
    import tensorflow as tf

    from services.inference.core.images import decode_for_model
    from services.inference.core.model import compile_predict

    if intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    jpeg = Path(image_file).read_bytes()
    model = keras.models.load_model(model_path, compile=False)
    predict = compile_predict(model, IMAGE_SIZE)
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


@dataclass
class Run:
    server: str
    concurrency: int
    requests: int
    errors: int
    wall_s: float
    latencies_ms: list[float]

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




def run_server(name: str, label: str, app: str, env: dict[str, str], log_dir: Path, jpeg: bytes,
               requests: dict[int, int], ready_path: str = "/health",
               bare: Callable[[], Bare] | None = None,
               ) -> tuple[list[Run], int, list[Bare]]:
    """Run the load at each concurrency; ``bare`` (if given) is measured just before and after concurrency 1,
    so the reference sees the same machine load as the served run (the machine is shared and noisy)."""
    from shared.processes import start_service

    service = start_service(name, app, {**env, "PYTHONPATH": str(ROOT)}, log_dir, ready_path=ready_path,
                            timeout=120)
    rss = PeakRss(service.pid)
    bare_runs: list[Bare] = []
    runs = []
    try:
        for c in CONCURRENCY:
            if bare and c == 1:
                bare_runs.append(bare())
            runs.append(asyncio.run(load(f"{service.url}/predict", jpeg, c, requests[c], label)))
            if bare and c == 1:
                bare_runs.append(bare())
    finally:
        peak = rss.stop()
        service.stop()
    return runs, peak, bare_runs


def report(runs: list[Run], rss: dict[str, int], bare_runs: list[Bare], threads: int, out: Path) -> str:
    # imported here: uvicorn imports this module as bench.serve for the naive app, without bench/ on sys.path
    from machine import cpu_model  # bench/ is on sys.path when a script runs

    by = {(r.server, r.concurrency): r for r in runs}
    naive32, serve32 = by[("naive", 32)], by[("sporeprint", 32)]
    serve1 = by[("sporeprint", 1)]
    speedup = serve32.throughput / naive32.throughput
    bare = {name: (statistics.mean(b[name][0] for b in bare_runs), statistics.mean(b[name][1] for b in bare_runs))
            for name in bare_runs[0]}
    p50 = serve1.percentile(50)
    ratio_default, ratio_same = p50 / bare["default"][0], p50 / bare["same"][0]
    lines = [
        "# Serving benchmark: naive `model.predict` per request vs sporeprint `/predict`",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {psutil.cpu_count()} cores ({cpu_model()}), "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} at the end.",
        f"Model: MobileNetV3-Small, {IMAGE_SIZE} px, {N_CLASSES} classes (random weights); the same .keras file "
        "for both servers. Each request posts the same 320 px JPEG (multipart) over loopback; both servers run "
        "under uvicorn (one worker). sporeprint: dynamic batching (max batch 32, max wait 5 ms), one compiled "
        f"`tf.function`, decoding off the event loop, TensorFlow on {threads} intra-op thread(s) (its setting "
        "`SPOREPRINT_INFERENCE_TF_INTRA_OP_THREADS`, default half the cores). The naive server keeps TensorFlow's "
        "defaults, as the obvious implementation does.",
        "",
        "| server | concurrency | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(f"| {run.server} | {run.concurrency} | {run.requests} | {run.errors} | {run.throughput:.1f} | "
                     f"{run.percentile(50):.1f} | {run.percentile(99):.1f} |")
    lines += [
        "",
        "Bare in-process `tf.function` call on the same image (p50; the mean of two measurements in fresh "
        "processes, just before and just after sporeprint's concurrency-1 run, with the server idle):",
        "",
        "| TensorFlow threads | model only (ms) | JPEG decode + resize + model (ms) |",
        "|---|---:|---:|",
        f"| default (one per core) | {bare['default'][0]:.1f} | {bare['default'][1]:.1f} |",
        f"| {threads}, as the server | {bare['same'][0]:.1f} | {bare['same'][1]:.1f} |",
        "",
        "| peak RSS | MiB |",
        "|---|---:|",
        *(f"| {name} | {peak / 2**20:.0f} |" for name, peak in rss.items()),
        "",
        "## Targets",
        f"- concurrency 32: sporeprint {serve32.throughput:.1f} req/s vs naive {naive32.throughput:.1f} req/s = "
        f"**{speedup:.1f}x** (target >= 4x: {'met' if speedup >= 4 else 'NOT met'}); p99 {serve32.percentile(99):.0f}"
        f" ms vs {naive32.percentile(99):.0f} ms (target lower: "
        f"{'met' if serve32.percentile(99) < naive32.percentile(99) else 'NOT met'}).",
        f"- concurrency 1: sporeprint p50 {p50:.1f} ms = **{ratio_default:.2f}x** the bare call with TensorFlow's "
        f"default threads (target <= 1.3x: {'met' if ratio_default <= 1.3 else 'NOT met'}); "
        f"**{ratio_same:.2f}x** the bare call on the server's {threads} thread(s) "
        f"({'met' if ratio_same <= 1.3 else 'NOT met'}), {p50 / bare['same'][1]:.2f}x that call with decoding. "
        f"The second is the serving overhead: {p50 - bare['same'][0]:.1f} ms per request of HTTP, multipart "
        "parsing, decoding, the curator filter and thread hand-offs.",
        "",
        "Command: `.venv/bin/python bench/serve.py`",
        "",
    ]
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve.md")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts (0.2 for a smoke run)")
    parser.add_argument("--sporeprint-only", action="store_true", help="skip the naive server (no report file)")
    args = parser.parse_args()
    os.chdir(ROOT)

    from shared.cpus import available_cpus
    from shared.registry import ClassLabel, ModelCard, ModelRegistry, ModelStatus, model_key
    from shared.settings import Settings
    from shared.stack import LocalStack
    from shared.storage import ObjectStore

    naive_requests = {c: max(8, int(n * args.scale)) for c, n in NAIVE_REQUESTS.items()}
    serve_requests = {c: max(8, int(n * args.scale)) for c, n in SERVE_REQUESTS.items()}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        model_path = build_model(work / "model.keras")
        jpeg = sample_jpeg()
        threads = max(1, available_cpus() // 2)  # as the server does by default

        def measure_bare() -> Bare:
            return {"default": bare_call(model_path, jpeg, 0), "same": bare_call(model_path, jpeg, threads)}

        stack = LocalStack(work / "stack")
        state = stack.up()
        try:
            env = {**state.env(), "SPOREPRINT_ENVIRONMENT": "development", "SPOREPRINT_S3_BUCKET": "bench-serve",
                   "SPOREPRINT_INFERENCE_MAX_BATCH_SIZE": "32", "SPOREPRINT_INFERENCE_MAX_WAIT_MS": "5",
                   "SPOREPRINT_LOG_LEVEL": "WARNING", "SPOREPRINT_INFERENCE_TF_INTRA_OP_THREADS": str(threads)}
            store = ObjectStore.from_settings(Settings(
                s3_endpoint=state.s3_endpoint, s3_access_key=state.access_key, s3_secret_key=state.secret_key,
                s3_bucket="bench-serve",
            ))
            store.ensure_bucket()
            store.put_file(model_key("bench-mnv3", "model.keras"), model_path)
            registry = ModelRegistry(store)
            registry.save_card(ModelCard(
                model_id="bench-mnv3", status=ModelStatus.complete, created_at=datetime.now(UTC), dataset="bench",
                manifest_version=1, backbone="MobileNetV3Small", image_size=IMAGE_SIZE,
                classes=[ClassLabel(index=i, name=f"Genus{i // 3} species{i}", genus=f"Genus{i // 3}")
                         for i in range(N_CLASSES)],
                artifacts=["model.keras", "card.json"],
            ))
            registry.promote("bench-mnv3", by="bench")

            runs, rss = [], {}
            serve_runs, rss["sporeprint"], bare_runs = run_server(
                "bench-sporeprint", "sporeprint", "services.inference.main:app", env, work / "logs", jpeg,
                serve_requests, ready_path="/ready", bare=measure_bare,
            )
            runs += serve_runs
            if args.sporeprint_only:
                for run in runs:
                    print(f"{run.server:>10} c={run.concurrency:<3} {run.throughput:7.1f} req/s  "
                          f"p50 {run.percentile(50):7.1f} ms  p99 {run.percentile(99):7.1f} ms  bare {bare_runs}")
                return
            naive_runs, rss["naive"], _ = run_server("bench-naive", "naive", "bench.serve:naive_app",
                                                  {MODEL_ENV: str(model_path)}, work / "logs", jpeg, naive_requests)
            runs += naive_runs
            for run in runs:
                print(f"{run.server:>10} c={run.concurrency:<3} {run.throughput:7.1f} req/s  "
                      f"p50 {run.percentile(50):7.1f} ms  p99 {run.percentile(99):7.1f} ms  errors {run.errors}")
        finally:
            stack.down(clean=True)
    print(report(runs, rss, bare_runs, threads, args.out))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "bare":
        _bare_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
