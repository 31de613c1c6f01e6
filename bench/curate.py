"""Benchmark: curator domain scores on a 2,300,000-row manifest, and the stage-1 filter's throughput.

Domain scores: a curated manifest version (the relevance gate's scores per row, 5,000 human labels) on a
real S3 server (the local SeaweedFS stack); timed in a fresh process from "read the version from S3" to
"one DomainScore per domain", with that process's peak RSS. Baseline: the same numbers computed with a
Python loop over rows (the notebook way). Targets (issue 5): < 5 s and < 2 GB RSS.
Filter: fixture-web JPEGs (320 px). The relevance gate's curation analysis (full decode, image statistics, pHash,
EfficientNet-Lite0 at 224 px in batches of 32: what a curation worker does per image) against today's baseline,
the statistics filter alone (decode + 14 statistics + fixed weights), one process and two.

    python bench/curate.py [--rows 2300000] [--images 400]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
from machine import cpu_model  # bench/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = Path(__file__).parent / "results" / "curate.md"
COLUMNS = ["image_id", "domain", "status", "sha256", "irrelevant_score", "duplicate_of"]




def make_manifest(rows: int, seed: int = 0) -> tuple[pa.Table, pa.Table, pa.Table]:
    """A harvest version (500 domains, Zipf sizes, 5% failed, 1% exact duplicates), its score cache, labels."""
    rng = np.random.default_rng(seed)
    n_domains = 500
    weights = 1.0 / np.arange(1, n_domains + 1) ** 1.1
    domain_index = rng.choice(n_domains, size=rows, p=weights / weights.sum())
    domains = pa.DictionaryArray.from_arrays(pa.array(domain_index.astype(np.int32)),
                                             pa.array([f"host-{i}.example.org" for i in range(n_domains)]))
    status_codes = rng.choice(3, size=rows, p=[0.94, 0.05, 0.01])
    status = pa.DictionaryArray.from_arrays(pa.array(status_codes.astype(np.int32)), ["ok", "failed", "skipped"])
    ids = np.char.mod("%032x", np.arange(rows, dtype=np.int64) * 2654435761 % (1 << 62))
    image_id = pa.array(ids.astype(object))
    digest = np.arange(rows, dtype=np.int64)
    dup = rng.random(rows) < 0.01
    digest[dup] = rng.integers(0, rows, int(dup.sum()))
    sha = np.char.mod("%064x", digest)
    sha256 = pa.array(np.where(status_codes == 0, sha, None).astype(object), pa.string())
    table = pa.table({
        "image_id": image_id,
        "domain": domains.cast(pa.string()),
        "status": status.cast(pa.string()),
        "sha256": sha256,
        "duplicate_of": pa.nulls(rows, pa.string()),
    })
    herbarium = domain_index % 37 == 5
    scores = np.where(herbarium, rng.beta(5, 2, rows), rng.beta(1, 12, rows)).astype(np.float32)
    ok = status_codes == 0
    # The relevance gate's scores, as a curated version carries them (one per analysed row).
    table = table.append_column("irrelevant_score", pa.array(scores, pa.float32(), mask=~ok))
    cache = pa.table({"image_id": image_id.filter(pa.array(ok)), "irrelevant_score": pa.array(scores[ok])})
    labelled = rng.choice(rows, 5000, replace=False)
    labels = pa.table({"image_id": image_id.take(pa.array(labelled)),
                       "human_irrelevant": pa.array(herbarium[labelled])})
    return table, cache, labels


def write_fixture(state_env: dict[str, str], rows: int) -> None:
    from services.curator.labels import LABELS_KEY
    from shared.manifests import ManifestStore, conform
    from shared.schemas import Operation
    from shared.settings import Settings
    from shared.storage import ObjectStore

    table, _cache, labels = make_manifest(rows)
    full = conform(table.append_column("observation_id", table.column("image_id"))
                   .append_column("source", pa.array(["gbif"] * rows))
                   .append_column("url", pa.array(["http://x/"] * rows)))
    store = ObjectStore.from_settings(Settings(**{k.removeprefix("SPOREPRINT_").lower(): v
                                                  for k, v in state_env.items()}))
    store.ensure_bucket()
    ManifestStore(store).write("bench", full, Operation.curation)
    now = "2026-01-01T00:00:00Z"
    store.put_json(LABELS_KEY, {"labels": {i: {"image_id": i, "label": "irrelevant" if h else "relevant",
                                               "dataset": "bench", "domain": "x", "actor": "bench", "at": now}
                                           for i, h in zip(labels.column("image_id").to_pylist(),
                                                           labels.column("human_irrelevant").to_pylist(),
                                                           strict=True)},
                                "history": []})


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries it over exec from the forking parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_domain_scores(python_loop: bool) -> dict[str, float]:
    """Runs in a fresh process: read the version from S3, score domains, report time and peak RSS."""
    from services.curator.domain_scores import DomainRules, score_version
    from services.curator.labels import LabelStore
    from shared.manifests import ManifestStore
    from shared.settings import get_settings
    from shared.storage import ObjectStore

    store = ObjectStore.from_settings(get_settings())
    started = time.perf_counter()
    cpu_started = time.process_time()
    if python_loop:
        table = ManifestStore(store).read("bench", columns=COLUMNS)
        ok = pa.compute.is_valid(table.column("irrelevant_score"))
        cache = table.filter(ok).select(["image_id", "irrelevant_score"])
        n_domains = baseline_loop(table, cache, LabelStore(store).table())
        rows = table.num_rows
    else:
        rows, scores = score_version(store, "bench", ManifestStore(store).latest_version("bench"), DomainRules())
        n_domains = len(scores)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    rss_mb = peak_rss_mb()
    return {"seconds": seconds, "rss_mb": rss_mb, "domains": n_domains, "rows": rows, "load": os.getloadavg()[0],
            "cpu": cpu}


def baseline_loop(table: pa.Table, cache: pa.Table, labels: pa.Table) -> int:
    """The notebook way: dicts and a for loop over rows."""
    score = dict(zip(cache.column("image_id").to_pylist(), cache.column("irrelevant_score").to_pylist(),
                     strict=True))
    human = dict(zip(labels.column("image_id").to_pylist(), labels.column("human_irrelevant").to_pylist(),
                     strict=True))
    counts: dict[str, list[int]] = {}
    seen: set[str] = set()
    for image_id, domain, status, sha in zip(table.column("image_id").to_pylist(), table.column("domain").to_pylist(),
                                             table.column("status").to_pylist(), table.column("sha256").to_pylist(),
                                             strict=True):
        c = counts.setdefault(domain, [0, 0, 0, 0, 0, 0])
        c[0] += 1
        if status == "failed":
            c[1] += 1
        if status != "ok":
            continue
        verdict = human.get(image_id)
        if verdict is None and image_id in score:
            verdict = score[image_id] > 0.5
        if verdict is not None:
            c[2] += 1
            c[3] += int(verdict)
        if sha in seen:
            c[4] += 1
        seen.add(sha)
    return len(counts)


def run_child(env: dict[str, str], python_loop: bool) -> dict[str, float]:
    args = [sys.executable, __file__, "--child", "loop" if python_loop else "columnar"]
    out = subprocess.run(args, env={**os.environ, **env}, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def filter_images(count: int) -> list[bytes]:
    from fixtureweb.content import SPECIES, ContentStore, ImageSpec
    from fixtureweb.encoding import ImageFormat
    from fixtureweb.irrelevant import IrrelevantKind
    from fixtureweb.species import SpeciesCatalog

    content = ContentStore(SpeciesCatalog(10, 0), cache_bytes=0)
    kinds = [SPECIES, *(k.value for k in IrrelevantKind)]
    return [content.image_bytes(ImageSpec(kinds[i % 5] if i % 2 else SPECIES, i % 10, 9_000_000 + i),
                                ImageFormat.JPEG, 320, 85) for i in range(count)]


def score_all(blobs: list[bytes]) -> int:
    from PIL import Image

    from shared.relevance.stats import statistics_score

    for data in blobs:
        statistics_score(Image.open(io.BytesIO(data)))
    return len(blobs)


def analyse_all(blobs: list[bytes]) -> int:
    """A curation worker's analysis: decode (a thread pool in the worker), then the gate in batches of 32."""
    from services.curator.analysis import decode_bytes, read_decoded
    from services.curator.filter.learned import pretrained_gate
    from shared.settings import get_settings

    settings = get_settings()
    gate = pretrained_gate(settings.relevance_pretrained, str(ROOT / ".data"), settings.relevance_prior_log_odds)
    decoded = [decode_bytes("x", None, data, gate) for data in blobs]
    for start in range(0, len(decoded), 32):
        read_decoded(gate, decoded[start:start + 32])
    return len(blobs)


def rate(function, blobs: list[bytes], processes: int) -> float:  # type: ignore[no-untyped-def]
    """Images per second, best of 3 passes (the machine is shared: the best pass is the least disturbed)."""
    function(blobs[:10])  # warm imports
    best = float("inf")
    if processes == 1:
        for _ in range(3):
            started = time.perf_counter()
            function(blobs)
            best = min(best, time.perf_counter() - started)
        return len(blobs) / best
    chunks = [blobs[i::processes] for i in range(processes)]
    with get_context("fork").Pool(processes) as pool:
        pool.map(function, [c[:5] for c in chunks])
        for _ in range(3):
            started = time.perf_counter()
            pool.map(function, chunks)
            best = min(best, time.perf_counter() - started)
        return len(blobs) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_300_000)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", choices=["columnar", "loop"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_domain_scores(args.child == "loop")))
        return

    from sporeprint.stack import LocalStack

    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp) / "stack")
        state = stack.up()
        try:
            env = {**state.env(), "SPOREPRINT_S3_BUCKET": "bench"}
            started = time.perf_counter()
            write_fixture(env, args.rows)
            print(f"fixture: {args.rows:,} rows written in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            columnar = [run_child(env, False) for _ in range(args.repeat)]
            loop = run_child(env, True)
        finally:
            stack.down(clean=True)

    blobs = filter_images(args.images)
    filter_1 = rate(score_all, blobs, 1)
    filter_2 = rate(score_all, blobs, 2)
    analysis_1 = rate(analyse_all, blobs, 1)

    best = min(columnar, key=lambda r: r["seconds"])
    median = statistics.median(r["seconds"] for r in columnar)
    lines = [
        "# Curator benchmark",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}. "
        f"Command: `.venv/bin/python bench/curate.py --rows {args.rows} --images {args.images}`. "
        f"Load average (1 min) during the domain-score runs: {min(r['load'] for r in columnar):.1f} to "
        f"{max(r['load'] for r in columnar):.1f} on {os.cpu_count()} cores (other engineers' jobs share the machine).",
        "",
        f"## Domain scores ({int(best['rows']):,} rows, {int(best['domains'])} domains, 5,000 labels; "
        "read from the S3 server in a fresh process)",
        "",
        "| implementation | wall time (best / median of runs) | CPU time (best) | peak RSS | target |",
        "|---|---|---|---|---|",
        f"| columnar (pyarrow group_by + numpy, `score_version`) | {best['seconds']:.2f} s / {median:.2f} s "
        f"({args.repeat} runs) | {min(r['cpu'] for r in columnar):.2f} s | "
        f"{max(r['rss_mb'] for r in columnar):.0f} MB | < 5 s, < 2 GB |",
        f"| baseline: Python loop over rows (notebook way) | {loop['seconds']:.2f} s (1 run) | {loop['cpu']:.2f} s | "
        f"{loop['rss_mb']:.0f} MB | |",
        "",
        f"## Relevance filter ({args.images} fixture-web JPEGs, 320 px, half irrelevant)",
        "",
        "| what (best of 3 passes) | 1 process | 2 processes |",
        "|---|---|---|",
        f"| curation analysis with the relevance gate (decode + statistics + pHash + EfficientNet-Lite0 224 px "
        f"in LiteRT on the worker's {os.cpu_count()} CPU threads while a pool decodes) | {analysis_1:.0f} img/s | |",
        f"| baseline: today's statistics filter alone (decode + 14 statistics) | {filter_1:.0f} img/s | "
        f"{filter_2:.0f} img/s |",
        "| baseline: a person opening images by eye (first team) | ~1 img/s (estimate, not measured) | |",
        "",
        "The gate costs a CNN forward pass per image, which the statistics never did: the price of a judgement "
        "that holds on real photos (bench/results/openset.md). On a GPU worker, or more CPU workers, it scales "
        "out like any curation job. Figures vary with the load of the shared machine; the best run is the least "
        "disturbed one. "
        "The columnar path streams the Parquet row groups (two threads), turns ids and sha256 digests into "
        "64-bit keys and joins by sorted keys; the baseline materialises Python objects for every row.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
