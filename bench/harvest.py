"""Harvest benchmark: images/s and peak RSS of three ways to fetch the same fixture web.

    .venv/bin/python bench/harvest.py                  # ~5-8 min (first run also renders the images)
    .venv/bin/python bench/harvest.py --quick          # a smaller smoke run

The fixture web (its own process) serves 20 domains with 100 ms median latency and ~50 KB JPEGs.
Contenders, each in its own process so that its peak RSS (process tree) can be measured:
  (a) the first team's notebook: a sequential loop (urllib, Pillow, files on local disk), on a subset;
  (b) img2dataset 1.47 writing files to local disk, best of a small sweep of its settings;
  (c) sporeprint's harvester writing to the real S3 server of a LocalStack (SeaweedFS + Redis).
(b) and (c) use the same resize: longest side 256 px, JPEG quality 90.
Results: bench/results/harvest.md.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_model  # noqa: E402 - bench/ is on sys.path when a script runs

from fixtureweb.config import PHOTO_HOSTS, DomainConfig, Latency, WebConfig  # noqa: E402
from fixtureweb.content import ContentStore, ImageSpec, media_path  # noqa: E402
from fixtureweb.encoding import ImageFormat  # noqa: E402
from fixtureweb.faults import Fault  # noqa: E402
from fixtureweb.species import SpeciesCatalog  # noqa: E402

MAX_SIDE = 256
QUALITY = 90
IMAGE_SIDE = 384  # at JPEG quality 95 the fixture photos weigh ~50 KB
SERVED_QUALITY = 95
LATENCY_MS = 100.0


# --------------------------------------------------------------------------- the fixture web
def web_config() -> WebConfig:
    domains = tuple(
        DomainConfig(name=name, latency=Latency(median_ms=LATENCY_MS, sigma=0.5, max_ms=2000),
                     image_size=IMAGE_SIDE, jpeg_quality=(SERVED_QUALITY, SERVED_QUALITY))
        for name in PHOTO_HOSTS[:20]
    )
    return WebConfig(seed=0, n_classes=10, domains=domains, cache_bytes=0)


def image_paths(count: int) -> list[tuple[str, str, str]]:
    """(domain, path, label) of ``count`` distinct photos spread over the 20 domains."""
    config = web_config()
    catalog = SpeciesCatalog(config.n_classes, config.seed)
    rows = []
    for i in range(count):
        spec = ImageSpec("species", i % config.n_classes, 50_000 + i)
        rows.append((config.domains[i % len(config.domains)].name, media_path(spec), catalog[spec.index].name))
    return rows


class DiskCachedStore(ContentStore):
    """The fixture web's renderer with a disk cache, so that benchmark runs after the first one do not
    spend minutes drawing the same 5,000 pictures; the server keeps every picture in memory."""

    def __init__(self, catalog: SpeciesCatalog, directory: Path) -> None:
        super().__init__(catalog, cache_bytes=0)
        self.directory = directory
        self.memory: dict[str, bytes] = {}

    @staticmethod
    def name(spec: ImageSpec, fmt: ImageFormat, max_side: int, quality: int, variant: Fault | None) -> str:
        key = f"{spec.kind}/{spec.index}/{spec.seed}/{fmt.value}/{max_side}/{quality}/{variant}"
        return hashlib.sha1(key.encode()).hexdigest() + ".bin"

    def cached(self, spec: ImageSpec, fmt: ImageFormat, max_side: int, quality: int,
               variant: Fault | None = None) -> bytes | None:
        name = self.name(spec, fmt, max_side, quality, variant)
        data = self.memory.get(name)
        if data is None and (self.directory / name).exists():
            data = self.memory[name] = (self.directory / name).read_bytes()
        return data

    def image_bytes(self, spec: ImageSpec, fmt: ImageFormat, max_side: int, quality: int,
                    variant: Fault | None = None) -> bytes:
        data = self.cached(spec, fmt, max_side, quality, variant)
        if data is None:
            data = super().image_bytes(spec, fmt, max_side, quality, variant)
            path = self.directory / self.name(spec, fmt, max_side, quality, variant)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
            self.memory[path.name] = data
        return data


def _render_share(args: tuple[str, list[str]]) -> int:
    from fixtureweb.server import FixtureHandler

    directory, urls = args
    config = web_config()
    handler = FixtureHandler(config, store=DiskCachedStore(SpeciesCatalog(config.n_classes, config.seed),
                                                           Path(directory)))
    for url in urls:
        handler.warm(url)
    return len(urls)


def prerender(cache: Path, count: int, workers: int) -> float:
    cache.mkdir(parents=True, exist_ok=True)
    urls = [f"http://{domain}{path}" for domain, path, _ in image_paths(count)]
    started = time.monotonic()
    shares = [(str(cache), urls[i::workers]) for i in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_render_share, shares)
    return time.monotonic() - started


def serve_web(port: int, cache: Path) -> None:
    from aiohttp import web

    from fixtureweb.server import FixtureHandler, build_app

    config = web_config()
    store = DiskCachedStore(SpeciesCatalog(config.n_classes, config.seed), cache)
    for path in cache.glob("*.bin"):
        store.memory[path.name] = path.read_bytes()
    web.run_app(build_app(FixtureHandler(config, store=store)), host="127.0.0.1", port=port, print=None,
                access_log=None)


# --------------------------------------------------------------------------- contenders
def run_sequential(urls: list[str], out: Path) -> dict[str, Any]:
    """The notebook: one request at a time, resize, save to local disk."""
    import io

    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    ok = 0
    started = time.monotonic()
    for index, url in enumerate(urls):
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback fixture web
                data = response.read()
            image = Image.open(io.BytesIO(data)).convert("RGB")
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            image.save(out / f"{index}.jpg", "JPEG", quality=QUALITY)
            ok += 1
        except Exception:  # noqa: BLE001 - a notebook loop carries on
            continue
    return {"ok": ok, "seconds": time.monotonic() - started}


def run_img2dataset(urls: list[str], out: Path, processes: int, threads: int,
                    s3_folder: str | None = None) -> dict[str, Any]:
    """img2dataset writing files to local disk, or (``s3_folder``: s3://bucket/prefix) webdataset shards to the
    S3 server through fsspec/s3fs (its endpoint and keys from the environment: FSSPEC_S3_*, AWS_*)."""
    from img2dataset import download

    url_file = out.parent / f"{out.name}-urls.txt"
    url_file.write_text("\n".join(urls) + "\n")
    if s3_folder is not None:
        import fsspec

        fs, root = fsspec.core.url_to_fs(s3_folder)
        fs.makedirs(root.split("/", 1)[0], exist_ok=True)  # the bucket
    started = time.monotonic()
    download(
        url_list=str(url_file), input_format="txt", output_format="webdataset" if s3_folder else "files",
        output_folder=s3_folder or str(out),
        image_size=MAX_SIDE, resize_mode="keep_ratio_largest", resize_only_if_bigger=True,
        encode_format="jpg", encode_quality=QUALITY, processes_count=processes, thread_count=threads,
        timeout=10, retries=0, extract_exif=False, number_sample_per_shard=max(100, len(urls) // (2 * processes)),
        disallowed_header_directives=["noai", "noimageai"], distributor="multiprocessing",
    )
    seconds = time.monotonic() - started
    if s3_folder is None:
        return {"ok": sum(1 for _ in out.rglob("*.jpg")), "seconds": seconds}
    import fsspec

    fs, root = fsspec.core.url_to_fs(s3_folder)
    stats = [json.loads(fs.cat(path)) for path in fs.glob(f"{root}/*_stats.json")]
    tars = fs.glob(f"{root}/*.tar")
    return {"ok": sum(int(stat["successes"]) for stat in stats), "seconds": seconds, "shards": len(tars)}


# --------------------------------------------------------------------------- measuring
# processes whose CPU time each measurement also accounts for (the fixture web, the S3 server, Redis)
SERVERS: dict[str, int] = {}


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def measure(command: list[str], env: dict[str, str] | None = None,
            until: Callable[[], bool] | None = None) -> tuple[dict[str, float], str]:
    """Run ``command``; sample the memory of its process tree: summed RSS, summed PSS (shared pages split
    between the processes that share them) and the largest single process's RSS; and the CPU seconds
    used by the tree and by each of the SERVERS meanwhile. ``until``: polled while the command runs; once it
    is true, the command's child processes (or the command itself if it has none) get SIGTERM."""
    servers_before = {name: _cpu(pid) for name, pid in SERVERS.items()}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env={**os.environ, **(env or {})}, cwd=ROOT)
    if until is not None:
        threading.Thread(target=_stop_when, args=(proc, until), daemon=True).start()
    peaks = {"rss": 0, "pss": 0, "largest": 0}
    cpu_by_pid: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            rss = pss = largest = 0
            for process in tree:
                try:
                    info = process.memory_full_info()
                    times = process.cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                cpu_by_pid[process.pid] = times.user + times.system
                rss, pss, largest = rss + info.rss, pss + getattr(info, "pss", info.rss), max(largest, info.rss)
            peaks.update(rss=max(peaks["rss"], rss), pss=max(peaks["pss"], pss),
                         largest=max(peaks["largest"], largest))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{command} exited with {proc.returncode}")
    memory = {"peak_rss_mb": peaks["rss"] / 2**20, "peak_pss_mb": peaks["pss"] / 2**20,
              "peak_largest_rss_mb": peaks["largest"] / 2**20, "cpu_s": sum(cpu_by_pid.values()),
              **{f"cpu_{name}_s": _cpu(pid) - servers_before[name] for name, pid in SERVERS.items()}}
    return memory, stdout.decode()


def _stop_when(proc: subprocess.Popen[bytes], until: Callable[[], bool]) -> None:
    while proc.poll() is None and not until():
        time.sleep(1.0)  # seldom: a poll of Redis counts among the harvest's Redis commands
    if proc.poll() is not None:
        return
    try:
        targets = psutil.Process(proc.pid).children() or [psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        return
    for process in targets:
        try:
            process.send_signal(signal.SIGTERM)  # RQ's warm shutdown: an idle worker exits at once
        except psutil.NoSuchProcess:
            pass


def measure_contender(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """A baseline contender (``bench/harvest.py run ...``) in a child process."""
    memory, stdout = measure([sys.executable, __file__, "run", *args], env)
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result.update(memory, images_per_s=result["ok"] / result["seconds"])
    return result


def measure_sporeprint(source: Path, dataset: str, concurrency: int, per_domain: int,
                       env: dict[str, str], workers: int = 1, shard_rows: int | None = None
                       ) -> dict[str, Any]:
    """sporeprint as it runs in production: the harvest is queued on RQ and ``workers`` real worker processes
    (``python -m shared.worker harvest``) run its plan, shard and merge jobs; images/s from the plan's
    start to the merge's end."""

    from pydantic import SecretStr
    from rq.job import JobStatus

    from services.downloader.harvest.options import HarvestOptions, ResizeOptions
    from services.downloader.harvest.state import HarvestRequest, HarvestState
    from services.downloader.importers import import_source
    from services.downloader.jobs import attempt_of, merge_job_id, submit_harvest
    from shared.manifests import ManifestStore
    from shared.queue import fetch_job, redis_connection
    from shared.settings import Settings
    from shared.storage import ObjectStore

    # a bucket of its own: images are content-addressed, so a run into a bucket that already holds them stores
    # nothing (the S3 server answers 412 at a fraction of a write's cost) and would look faster than it is
    env = {**env, "SPOREPRINT_S3_BUCKET": dataset}
    settings = Settings(s3_endpoint=env["SPOREPRINT_S3_ENDPOINT"], s3_access_key=env["SPOREPRINT_S3_ACCESS_KEY"],
                        s3_secret_key=env["SPOREPRINT_S3_SECRET_KEY"], s3_bucket=env["SPOREPRINT_S3_BUCKET"],
                        redis_url=env["SPOREPRINT_REDIS_URL"], redis_username=env.get("SPOREPRINT_REDIS_USERNAME"),
                        redis_password=SecretStr(env["SPOREPRINT_REDIS_PASSWORD"])
                        if env.get("SPOREPRINT_REDIS_PASSWORD") else None)
    store = ObjectStore.from_settings(settings)
    store.ensure_bucket()
    info = import_source(source, dataset, ManifestStore(store))
    options = HarvestOptions(concurrency=concurrency, per_domain=per_domain, retries=1,
                             resize=ResizeOptions(max_side=MAX_SIDE, quality=QUALITY))
    request = HarvestRequest(id=f"bench-{dataset}", dataset=dataset, version=info.version, options=options,
                             created_at=datetime.now(UTC))
    state = HarvestState(store, request.id)
    state.save_request(request)
    redis = redis_connection(settings)
    commands_before = redis_commands(redis)
    job = submit_harvest(redis, request, retries=0)
    merge_id = merge_job_id(request.id, attempt_of(job.id))

    def merged() -> bool:  # the merge is over, or a failed job means it never will be
        ended = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED}
        merge, plan = fetch_job(redis, merge_id), fetch_job(redis, job.id)
        return ((merge is not None and merge.get_status(refresh=True) in ended)
                or (plan is not None and plan.get_status(refresh=True) == JobStatus.FAILED))

    # long-running workers, as in production, stopped once the merge is over: with --burst a worker started
    # while the plan job is running finds the queue empty and quits before the shards exist
    worker = f"{sys.executable} -m shared.worker harvest"
    command = ["sh", "-c", " & ".join([worker] * workers) + " & wait"]
    memory, _ = measure(command, {
        **env, "SPOREPRINT_DOWNLOADER_ALLOW_LOOPBACK": "true",
        **({"SPOREPRINT_DOWNLOADER_SHARD_ROWS": str(shard_rows)} if shard_rows else {}),
        "SPOREPRINT_DOWNLOADER_RESOLVE": json.dumps({"*.test": "127.0.0.1"}), "SPOREPRINT_LOG_LEVEL": "WARNING"},
        until=merged)
    # a harvest is a plan job, shard jobs and a merge job: timed from the plan's start to the merge's end
    plan, merge = fetch_job(redis, job.id), fetch_job(redis, merge_id)
    if plan is None or merge is None:
        raise RuntimeError("the harvest's jobs vanished from Redis")
    outcome = state.outcome()
    if outcome is None or plan.started_at is None or merge.ended_at is None:
        raise RuntimeError(f"the harvest did not finish: plan {plan.get_status()}, merge {merge.get_status()}")
    seconds = (merge.ended_at - plan.started_at).total_seconds()
    ok = int(outcome.counts["ok"])
    return {"ok": ok, "failed": outcome.counts["failed"], "seconds": seconds, "images_per_s": ok / seconds,
            "workers": workers, "concurrency": concurrency, "per_domain": per_domain,
            "redis_commands": redis_commands(redis) - commands_before, **memory}


def redis_commands(redis: Any) -> int:
    """Commands the Redis server has run so far (INFO commandstats): RQ's own and the politeness scripts', and
    the bench's poll for the merge's end (a few commands a second: under 0.02 per image here)."""
    return sum(int(stats["calls"]) for stats in redis.info("commandstats").values())


def image_costs(cache: Path) -> dict[str, float]:
    """p50 ms to decode one fixture photo, resize it (box, as the harvester) and encode it, in one thread."""
    import io
    import statistics

    from PIL import Image

    data = next(iter(sorted(cache.glob("*.bin")))).read_bytes()
    photo = Image.open(io.BytesIO(data))
    photo.load()
    small = photo.resize((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)

    def decode() -> None:
        Image.open(io.BytesIO(data)).load()

    def resize() -> None:
        photo.copy().thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX, reducing_gap=3.0)

    def encode() -> None:
        small.save(io.BytesIO(), "JPEG", quality=QUALITY)

    costs = {}
    for name, step in (("decode", decode), ("resize", resize), ("encode", encode)):
        times = []
        for _ in range(200):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        costs[name] = statistics.median(times[20:]) * 1000
    return costs


def measure_only(args: argparse.Namespace, tmp: Path, urls: list[str], source: Path,
                 env: dict[str, str]) -> dict[str, Any]:
    """One contender on ``args.images`` images (img2dataset at its best setting of the full run)."""
    if args.only == "sporeprint":
        return measure_sporeprint(source, "bench-only", 128, 16, env, workers=args.workers)
    listed = tmp / "urls.json"
    listed.write_text(json.dumps(urls))
    if args.only == "sequential":
        return measure_contender(["sequential", str(listed), str(tmp / "seq")])
    return measure_contender(["img2dataset", str(listed), str(tmp / "i2d"), "2", "256"])


def s3_env(env: dict[str, str]) -> dict[str, str]:
    """The stack's S3 server for fsspec/s3fs (img2dataset opens its output folder with ``url_to_fs`` and no
    options: fsspec reads ``FSSPEC_S3_<KWARG>`` from the environment, botocore the AWS_* keys)."""
    endpoint = env["SPOREPRINT_S3_ENDPOINT"]
    endpoint = endpoint if "://" in endpoint else f"http://{endpoint}"
    return {"FSSPEC_S3_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": env["SPOREPRINT_S3_ACCESS_KEY"],
            "AWS_SECRET_ACCESS_KEY": env["SPOREPRINT_S3_SECRET_KEY"]}


def wait_port(port: int, timeout: float = 120) -> None:
    from sporeprint.stack import port_open

    deadline = time.monotonic() + timeout
    while not port_open(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing on port {port}")
        time.sleep(0.2)




def main() -> None:  # noqa: PLR0915 - a linear script
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--sequential", type=int, default=300, help="subset for the sequential loop")
    parser.add_argument("--sweep", type=int, default=2000, help="images per run of the concurrency table")
    parser.add_argument("--quick", action="store_true", help="1000 images, 100 sequential, a small sweep")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".data" / "bench-harvest-web")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "harvest.md")
    parser.add_argument("--only", choices=("sequential", "img2dataset", "sporeprint"),
                        help="measure one contender on --images, print its figures, write no report")
    parser.add_argument("--workers", type=int, default=1, help="with --only sporeprint: RQ workers harvesting")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.quick:
        args.images, args.sequential, args.sweep = 1000, 100, 500
    from sporeprint.stack import LocalStack, free_port

    began = time.monotonic()
    results["load_before"] = os.getloadavg()
    render_s = prerender(args.cache_dir, args.images, workers=os.cpu_count() or 2)
    print(f"fixture pictures ready ({render_s:.0f} s)", flush=True)
    results["image_costs_ms"] = image_costs(args.cache_dir)
    rows = image_paths(args.images)
    port = free_port()
    web = subprocess.Popen([sys.executable, __file__, "serve-web", "--port", str(port), "--cache-dir",
                            str(args.cache_dir)], cwd=ROOT)
    tmp = Path(tempfile.mkdtemp(prefix="bench-harvest-"))
    stack = LocalStack(tmp / "stack")
    try:
        wait_port(port)
        state = stack.up()
        SERVERS.update(web=web.pid, s3=state.pids["s3"], redis=state.pids["redis"])
        env = {**state.env(), "SPOREPRINT_ENVIRONMENT": "development", "SPOREPRINT_CURATOR_URL":
               f"http://127.0.0.1:{free_port()}"}
        by_host = [f"http://{domain}:{port}{path}" for domain, path, _ in rows]
        by_path = [f"http://127.0.0.1:{port}/{domain}{path}" for domain, path, _ in rows]
        source = tmp / "source.csv"
        with open(source, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["url", "label"])
            writer.writerows((url, label) for url, (_, _, label) in zip(by_host, rows, strict=True))

        if args.only:
            results[args.only] = measure_only(args, tmp, by_path, source, env)
            print(json.dumps(results[args.only], indent=1), flush=True)
            return
        # warm the web's process (its first responses load pictures into memory) with a quick pass
        seq_urls = tmp / "seq.json"
        seq_urls.write_text(json.dumps(by_path[: args.sequential]))
        print("(a) sequential loop ...", flush=True)
        results["sequential"] = measure_contender(["sequential", str(seq_urls), str(tmp / "seq")])
        print(results["sequential"], flush=True)

        all_urls = tmp / "all.json"
        all_urls.write_text(json.dumps(by_path))
        sweep_urls = tmp / "sweep.json"
        sweep_urls.write_text(json.dumps(by_path[: args.sweep]))
        results["img2dataset_sweep"] = []
        for processes, threads in ((2, 64), (2, 256), (4, 128)):
            print(f"(b) img2dataset sweep: {processes} processes x {threads} threads ...", flush=True)
            run = measure_contender(["img2dataset", str(sweep_urls), str(tmp / f"i2d-{processes}-{threads}"),
                                     str(processes), str(threads)])
            run.update(processes=processes, threads=threads)
            results["img2dataset_sweep"].append(run)
            print(run, flush=True)
        best = max(results["img2dataset_sweep"], key=lambda run: run["images_per_s"])
        print(f"(b) img2dataset, best settings, {args.images} images ...", flush=True)
        results["img2dataset"] = measure_contender(["img2dataset", str(all_urls), str(tmp / "i2d-best"),
                                                    str(best["processes"]), str(best["threads"])])
        results["img2dataset"].update(processes=best["processes"], threads=best["threads"])
        print(results["img2dataset"], flush=True)
        print(f"(b) img2dataset, best settings, webdataset shards into S3, {args.images} images ...", flush=True)
        results["img2dataset_s3"] = measure_contender(
            ["img2dataset", str(all_urls), str(tmp / "i2d-s3"), str(best["processes"]), str(best["threads"]),
             "s3://bench-i2d/webdataset"], s3_env(env))
        results["img2dataset_s3"].update(processes=best["processes"], threads=best["threads"])
        print(results["img2dataset_s3"], flush=True)

        print(f"(c) sporeprint, {args.images} images into S3 ...", flush=True)
        results["sporeprint"] = measure_sporeprint(source, "bench-main", 128, 16, env)
        print(results["sporeprint"], flush=True)

        # one RQ worker, and one RQ worker per core, on the same shards (a quarter of the rows each):
        # alternating, twice
        results["workers"] = []
        shard_rows = max(1, args.images // 4)
        for round_ in (1, 2):
            for workers in (1, os.cpu_count() or 2):
                print(f"(c) sporeprint, {workers} worker(s), round {round_} ...", flush=True)
                run = measure_sporeprint(source, f"bench-workers-{round_}-{workers}", 128, 16, env,
                                         workers=workers, shard_rows=shard_rows)
                results["workers"].append({**run, "round": round_, "shard_rows": shard_rows})
                print(run, flush=True)

        sweep_source = tmp / "sweep.csv"
        sweep_source.write_text("\n".join(source.read_text().splitlines()[: args.sweep + 1]) + "\n")
        results["sweep"] = []
        for concurrency, per_domain in ((8, 2), (32, 4), (64, 8), (128, 16), (256, 32)):
            print(f"(c) sporeprint sweep: concurrency {concurrency}, per domain {per_domain} ...", flush=True)
            run = measure_sporeprint(sweep_source, f"bench-c{concurrency}", concurrency, per_domain, env)
            results["sweep"].append(run)
            print(run, flush=True)
    finally:
        web.terminate()
        web.wait(15)
        stack.down(clean=True)
    results["total_s"] = time.monotonic() - began
    results["load_after"] = os.getloadavg()
    results["render_s"] = render_s
    write_report(args, results)
    print(f"wrote {args.out} ({results['total_s']:.0f} s)")


PHOTOS = 2_300_000
GBIF_SAMPLE = ROOT / "data" / "samples" / "gbif" / "multimedia_psilocybe_semilanceata.txt"


def largest_domain_share(path: Path = GBIF_SAMPLE) -> tuple[str, float]:
    """The host serving most photos of a real GBIF multimedia export, and its share of them."""
    from collections import Counter
    from urllib.parse import urlsplit

    with open(path, encoding="utf-8", newline="") as stream:
        hosts = Counter(urlsplit(row.get("identifier") or "").hostname
                        for row in csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))
    host, count = hosts.most_common(1)[0]
    return str(host), count / sum(hosts.values())


def capacity_on_paper(runs: list[dict[str, Any]], cores: int) -> list[str]:
    """Workers, S3 server and Redis load for PHOTOS photos, from the CPU and Redis figures measured above."""
    import math

    from services.downloader.harvest.options import HarvestOptions

    default = HarvestOptions().per_domain
    many = [run for run in runs if run["workers"] > 1] or runs
    in_flight = many[0]["concurrency"]
    own_ms = sum(1000 * run["cpu_s"] / run["ok"] for run in many) / len(many)
    s3_ms = sum(1000 * run.get("cpu_s3_s", 0.0) / run["ok"] for run in many) / len(many)
    commands = sum(run["redis_commands"] / run["ok"] for run in many) / len(many)
    redis_ms = sum(1000 * run.get("cpu_redis_s", 0.0) / run["ok"] for run in many) / len(many)
    measured = sum(run["images_per_s"] for run in many) / len(many) / cores
    per_core = 1000 / own_ms
    mean_s = LATENCY_MS / 1000 * math.exp(0.5 ** 2 / 2)
    host, share = largest_domain_share()
    lines = [
        f"## On paper: {PHOTOS / 1e6:.1f} million photos at a {LATENCY_MS:.0f} ms median latency",
        "",
        f"From the {many[0]['workers']}-worker rounds above: sporeprint's processes spend {own_ms:.1f} ms of CPU "
        f"per stored image, so a core given to harvest workers alone stores about {per_core:.0f} images/s "
        f"({measured:.1f} images/s per core were measured here, where the fixture web and the S3 server share "
        f"the cores); the S3 server spends {s3_ms:.1f} ms per PUT; Redis runs {commands:.2f} commands per image "
        f"(RQ's and the politeness scripts') in {redis_ms:.2f} ms of its CPU. At this latency (lognormal, "
        f"mean {1000 * mean_s:.0f} ms) one worker "
        f"with {in_flight} requests in flight could wait on {in_flight / mean_s:.0f} images/s, so the CPU binds "
        f"before the network does. One domain is held to per_domain / mean latency: {default / mean_s:.0f} "
        f"images/s at the default {default}, {64 / mean_s:.0f} at 64. In the GBIF export in data/samples, "
        f"{host} serves {share:.0%} of the photos.",
        "",
        "| finish in | images/s | worker cores | hosts of 8 cores | S3 server cores | Redis commands/s "
        f"| Redis CPU | per_domain {host} needs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for hours in (24, 8, 1):
        rate = PHOTOS / (hours * 3600)
        workers = math.ceil(rate / per_core)
        lines.append(f"| {hours} h | {rate:.0f} | {workers} | {math.ceil(workers / 8)} | "
                     f"{math.ceil(rate * s3_ms / 1000)} | {rate * commands:.0f} | "
                     f"{rate * redis_ms / 1000:.0%} of a core | "
                     f"{math.ceil(share * rate * mean_s)} |")
    lines += [
        "",
        "What limits it: per-domain politeness first. However many workers run, the largest domain's share "
        "arrives no faster than per_domain / latency (AIMD lowers it further on 429s), so the harvest of a "
        "download dominated by one host takes at least its share × photos × latency / per_domain. The S3 server "
        "next: its CPU per PUT is of the same order as a worker's per image, so it needs cores of its own (AWS S3 "
        "takes 3,500 PUTs/s per prefix). Redis last: it runs on one core, and the column above is the share of "
        "that core the harvest's commands take, from its CPU measured in these rounds.",
    ]
    return lines


def write_report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    seq, i2d, sp = results["sequential"], results["img2dataset"], results["sporeprint"]
    lines = [
        "# Harvest benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `.venv/bin/python bench/harvest.py` "
        f"({results['total_s']:.0f} s in all; drawing the fixture pictures took {results['render_s']:.0f} s "
        "and is cached for later runs).",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}. The fixture web, the S3 server and the contender share these cores "
        f"(load average {results['load_before'][0]:.1f} before the run, {results['load_after'][0]:.1f} after it: "
        "the run itself keeps both busy). Figures move by about ±10% between runs: compare the rows of one run.",
        "",
        f"Fixture web: 20 domains, lognormal latency with a {LATENCY_MS:.0f} ms median (σ 0.5), "
        f"{args.images} distinct {IMAGE_SIDE}-px JPEG photos of ~50 KB, no faults. "
        f"Output: longest side ≤ {MAX_SIDE} px, JPEG quality {QUALITY}.",
        "",
        "| contender | images | ok | seconds | images/s | peak memory: PSS of the tree / largest process RSS "
        "/ RSS summed | vs (a) | vs (b) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def mem(result: dict[str, Any]) -> str:
        return (f"{result['peak_pss_mb']:.0f} / {result['peak_largest_rss_mb']:.0f} / "
                f"{result['peak_rss_mb']:.0f} MB")

    def row(name: str, result: dict[str, Any], images: int) -> str:
        return (f"| {name} | {images} | {result['ok']} | {result['seconds']:.1f} | {result['images_per_s']:.1f} | "
                f"{mem(result)} | "
                f"{result['images_per_s'] / seq['images_per_s']:.0f}× | "
                f"{result['images_per_s'] / i2d['images_per_s']:.2f}× |")

    lines += [
        row("(a) sequential loop (notebook: urllib + Pillow, local files)", seq, args.sequential),
        row(f"(b) img2dataset 1.47, {i2d['processes']} processes × {i2d['threads']} threads, local files", i2d,
            args.images),
        row("(b') img2dataset 1.47, same settings, webdataset shards into S3 (SeaweedFS, via s3fs)",
            results["img2dataset_s3"], args.images),
        row(f"(c) sporeprint: an RQ worker harvesting into S3 (SeaweedFS), concurrency {sp['concurrency']}, "
            f"{sp['per_domain']} per domain", sp, args.images),
        "",
        f"(a) was measured on the first {args.sequential} images only (at ~{1 / seq['images_per_s']:.2f} s an image "
        f"the whole set would take {args.images / seq['images_per_s'] / 60:.0f} min).",
        "Memory is sampled every 0.1 s over the contender's whole process tree (for (c): the RQ worker, its "
        "work horses and the scheduler): PSS counts a page "
        "shared by n processes as 1/n in each, so its sum is the tree's real footprint; summed RSS counts shared "
        "pages once per process and overstates. "
        "(c)'s time is the RQ job's own (started_at to ended_at), which includes reading the input manifest, "
        "the blacklist lookup, checkpoints and writing the new manifest version. Every sporeprint run writes "
        "into a bucket of its own, so none finds its images already stored by an earlier run.",
        "",
        "## Where the CPU goes (milliseconds of CPU per stored image)",
        "",
        "| contender | its own processes | fixture web | S3 server | total | ceiling on these cores | reached |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    cores = os.cpu_count() or 1

    def cpu_row(name: str, result: dict[str, Any]) -> str:
        own, web_ms, s3_ms = (1000 * result.get(key, 0.0) / max(1, result["ok"]) for key in
                              ("cpu_s", "cpu_web_s", "cpu_s3_s"))
        total = own + web_ms + s3_ms
        ceiling = 1000 * cores / total if total else 0.0
        return (f"| {name} | {own:.1f} | {web_ms:.1f} | {s3_ms:.1f} | {total:.1f} | "
                f"{ceiling:.0f} images/s | {result['images_per_s'] / ceiling if ceiling else 0:.0%} |")

    for name, result in (("(a) sequential", seq), ("(b) img2dataset", i2d),
                         ("(b') img2dataset → S3", results["img2dataset_s3"]), ("(c) sporeprint", sp)):
        lines.append(cpu_row(name, result))
    web_ms, s3_ms = (1000 * sp.get(key, 0.0) / max(1, sp["ok"]) for key in ("cpu_web_s", "cpu_s3_s"))
    goal = 1.5 * i2d["images_per_s"]
    costs = results["image_costs_ms"]
    image_ms = sum(costs.values())
    own_ms = 1000 * sp["cpu_s"] / max(1, sp["ok"])
    budget = 1000 * cores / goal - web_ms - s3_ms
    lines += [
        "",
        "Once the network waits overlap, (b) and (c) are bound by the CPU: each runs close to the ceiling its "
        "CPU per image allows on these cores. (c) also pays for the S3 server, which shares the cores, where (b) "
        "writes local files.",
        "",
        f"What 1.5× (b) would take here: {goal:.0f} images/s on {cores} cores leaves {1000 * cores / goal:.1f} ms of "
        f"CPU per image for everything, even with every core busy all the time. The fixture web "
        f"({web_ms:.1f} ms) and the S3 server ({s3_ms:.1f} ms) would leave sporeprint {budget:.1f} ms. Its image "
        f"work alone, decoding the ~50 KB JPEG ({costs['decode']:.2f} ms), resizing it ({costs['resize']:.2f} ms) "
        f"and encoding the result ({costs['encode']:.2f} ms; p50 of one thread on an idle machine, before the "
        f"contenders ran), takes {image_ms:.2f} ms of that; sporeprint now spends {own_ms:.1f} ms per image, "
        f"{own_ms - image_ms:.1f} ms of it on the rest: the two HTTP exchanges (GET from the host, PUT to S3), "
        "the event loop and the checkpoints.",
        "",
        f"## sporeprint: one RQ worker or one per core ({args.images} images, concurrency 128, 16 per domain)",
        "",
        "A worker fetches its shards with one event loop and a thread pool for the image work; to use more cores, "
        f"run more workers. Here 1 worker, then {cores}, take the harvest's shards "
        f"({results['workers'][0]['shard_rows']} rows each here, so that every worker has some). Runs "
        "alternate, twice; the time is the harvest's, from the plan's start to the merge's end.",
        "",
        "| round | workers | images/s | peak PSS / largest RSS / summed RSS | Redis commands per image |",
        "|---:|---:|---:|---:|---:|",
        *(f"| {run['round']} | {run['workers']} | {run['images_per_s']:.1f} | {mem(run)} | "
          f"{run['redis_commands'] / max(1, run['ok']):.2f} |" for run in results["workers"]),
        "",
        "| round, workers: CPU per stored image | its own processes | fixture web | S3 server | total "
        "| ceiling | reached |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(cpu_row(f"{run['round']}, {run['workers']}", run) for run in results["workers"]),
        "",
        *capacity_on_paper(results["workers"], cores),
        "",
        f"## img2dataset settings tried ({args.sweep} images each)",
        "",
        "| processes | threads | images/s | peak PSS / largest RSS / summed RSS |",
        "|---:|---:|---:|---:|",
    ]
    for run in results["img2dataset_sweep"]:
        lines.append(f"| {run['processes']} | {run['threads']} | {run['images_per_s']:.1f} | {mem(run)} |")
    lines += [
        "",
        f"## sporeprint: throughput against concurrency ({args.sweep} images each)",
        "",
        "| concurrency (global) | per domain | images/s | peak PSS / largest RSS / summed RSS |",
        "|---:|---:|---:|---:|",
    ]
    for run in results["sweep"]:
        lines.append(f"| {run['concurrency']} | {run['per_domain']} | {run['images_per_s']:.1f} | {mem(run)} |")
    lines += [
        "",
        f"Targets: (c) ≥ 1.5× (b): {'met' if sp['images_per_s'] >= 1.5 * i2d['images_per_s'] else 'NOT met'} "
        f"({sp['images_per_s'] / i2d['images_per_s']:.2f}×); "
        f"(c) ≥ 100× (a): {'met' if sp['images_per_s'] >= 100 * seq['images_per_s'] else 'NOT met'} "
        f"({sp['images_per_s'] / seq['images_per_s']:.0f}×); "
        f"peak memory < 500 MB: PSS {sp['peak_pss_mb']:.0f} MB "
        f"({'met' if sp['peak_pss_mb'] < 500 else 'NOT met'}), largest process {sp['peak_largest_rss_mb']:.0f} MB, "
        f"summed RSS {sp['peak_rss_mb']:.0f} MB ({'met' if sp['peak_rss_mb'] < 500 else 'NOT met'}).",
        "",
        "<details><summary>raw results</summary>",
        "",
        "```json",
        json.dumps(results, indent=1, default=str),
        "```",
        "</details>",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))


def run_one(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "sequential":
        result = run_sequential(json.loads(Path(argv[1]).read_text()), Path(argv[2]))
    elif kind == "img2dataset":
        result = run_img2dataset(json.loads(Path(argv[1]).read_text()), Path(argv[2]), int(argv[3]), int(argv[4]),
                                 argv[5] if len(argv) > 5 else None)
    else:
        raise SystemExit(f"unknown contender {kind}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        run_one(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "serve-web":
        serve_args = argparse.ArgumentParser()
        serve_args.add_argument("--port", type=int)
        serve_args.add_argument("--cache-dir", type=Path)
        parsed = serve_args.parse_args(sys.argv[2:])
        serve_web(parsed.port, parsed.cache_dir)
    else:
        main()
