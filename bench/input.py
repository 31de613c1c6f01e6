"""Training input benchmark: images/s of three input pipelines on the same 2,000 synthetic JPEGs.

    .venv/bin/python bench/input.py            # ~4-7 min on the 2-core machine
    .venv/bin/python bench/input.py --quick    # 400 images, a smoke run

2,000 fixtureweb species photos (256 px JPEG, 10 classes), 224 px output, batch 32, rotation up to 180
degrees + horizontal flip:
  (a) Keras ``ImageDataGenerator.flow_from_directory`` with ``rotation_range=180`` (the notebooks' pipeline);
  (b) the sporeprint pipeline (services.trainer.input) reading from the real S3 server of a LocalStack through
      its disk cache, cache warm (the cold fill is reported too); (b) and (c) alternate, best of 2 epochs each;
  (c) decode + resize only, the same files, no augmentation: the ceiling of (b).
  (d) TFRecord shards (services.trainer.shards, issue 18): the same images packed into shards on the S3
      server, streamed by services.trainer.input.build_shard_dataset through the bounded cache; cold (empty
      cache: download inside the epoch) and warm, decode-only (against (c) and against the per-object cold
      path, fill + one epoch) and with rotation + flip (against (b)).
Targets (issue 6): (b) >= 5x (a) and >= 60% of (c). Also one CPU training epoch (steps/s) of the tiny CNN
and of MobileNetV3-Small (weights=None) on pipeline (b), and the process's peak RSS.
Results: bench/results/input.md.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from machine import cpu_model  # bench/ is on sys.path when a script runs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).parent / "results" / "input.md"
SIZE, OUT, BATCH, CLASSES = 256, 224, 32, 10
ROUNDS = 2
SHARD_BYTES = 4 * 2**20  # 2,000 bench JPEGs are ~40 MB: 4 MB shards give ~10 of them to interleave


def render(job: tuple[int, int]) -> tuple[int, int, bytes]:
    from fixtureweb.species import SpeciesCatalog

    class_index, photo = job
    image = SpeciesCatalog(CLASSES, seed=0).render(class_index, seed=photo, size=SIZE)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return class_index, photo, buffer.getvalue()




def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def images_per_second(batches, limit: int | None = None) -> tuple[float, int]:  # noqa: ANN001 - any iterable
    start, images = time.perf_counter(), 0
    for index, batch in enumerate(batches):
        images += int(batch[0].shape[0])
        if limit is not None and index + 1 >= limit:
            break
    return images / (time.perf_counter() - start), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="400 images")
    args = parser.parse_args()
    n_images = 400 if args.quick else args.images
    logging.basicConfig(level=logging.WARNING)

    from services.trainer.cache import ImageCache
    from shared.settings import Settings
    from shared.storage import ObjectStore
    from sporeprint.stack import LocalStack

    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-input-") as tmp:
        root = Path(tmp)
        stack = LocalStack(root / "stack")
        state = stack.up()
        try:
            settings = Settings(s3_endpoint=state.s3_endpoint, s3_access_key=state.access_key,
                                s3_secret_key=state.secret_key, s3_bucket="bench-input", redis_url=state.redis_url)
            store = ObjectStore.from_settings(settings)
            store.ensure_bucket()

            started = time.perf_counter()
            jobs = [(index % CLASSES, index // CLASSES) for index in range(n_images)]
            directory = root / "by-class"
            keys, labels = [], []
            with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                for class_index, photo, data in pool.map(render, jobs, chunksize=16):
                    path = directory / f"class_{class_index:02d}" / f"{photo:05d}.jpg"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    key = f"images/bench/{class_index:02d}/{photo:05d}.jpg"
                    store.put_bytes(key, data, "image/jpeg")
                    keys.append(key)
                    labels.append(class_index)
            print(f"rendered and stored {n_images} JPEGs in {time.perf_counter() - started:.1f} s")

            # (a) ImageDataGenerator, the notebooks' pipeline
            from tensorflow.keras.preprocessing.image import ImageDataGenerator

            generator = ImageDataGenerator(rotation_range=180, horizontal_flip=True).flow_from_directory(
                directory, target_size=(OUT, OUT), batch_size=BATCH, class_mode="sparse", seed=0)
            a_batches = min(len(generator), 24)
            a_rate, a_images = images_per_second(generator[i] for i in range(a_batches))
            print(f"(a) ImageDataGenerator: {a_rate:.0f} img/s over {a_images} images")

            # (b) sporeprint: S3 -> disk cache -> tf.data with batched rotation + flip
            from services.trainer.input import build_dataset
            from shared.training import AugmentationConfig

            cache = ImageCache(store, root / "work")
            started = time.perf_counter()
            paths = cache.fill(keys)
            fill_seconds = time.perf_counter() - started
            files = [str(paths[key]) for key in keys]
            augmentation = AugmentationConfig(rotation=180, flip_horizontal=True, zoom=0, brightness=0, contrast=0)
            pipeline = build_dataset(files, labels, OUT, BATCH, augmentation=augmentation, shuffle=True)
            # (c) decode + resize only, the same files
            ceiling = build_dataset(files, labels, OUT, BATCH, augmentation=None, shuffle=True)
            images_per_second(pipeline, limit=4)  # warm-up: traces (and XLA-compiles) the functions
            images_per_second(ceiling, limit=4)
            # The machine is shared: (b) and (c) alternate, best epoch of each counts.
            b_runs, c_runs = [], []
            for _ in range(ROUNDS):
                b_runs.append(images_per_second(pipeline))
                c_runs.append(images_per_second(ceiling))
            (b_rate, b_images), (c_rate, c_images) = max(b_runs), max(c_runs)
            print(f"(b) sporeprint pipeline: {b_rate:.0f} img/s over {b_images} images, epochs "
                  f"{[round(r) for r, _ in b_runs]} (cold cache fill {n_images / fill_seconds:.0f} img/s)")
            print(f"(c) decode + resize: {c_rate:.0f} img/s, epochs {[round(r) for r, _ in c_runs]}")

            # (d) shards: pack once, then stream from the S3 server, cold and warm
            from services.trainer.dataset import DatasetPlan, Example
            from services.trainer.input import build_shard_dataset
            from services.trainer.shards import pack
            from shared.registry import ClassLabel

            sizes = {key: os.path.getsize(paths[key]) for key in keys}
            plan = DatasetPlan(
                classes=[ClassLabel(index=index, name=f"class_{index:02d}") for index in range(CLASSES)],
                splits={"train": [Example(key, key, key, label, sizes[key]) for key, label in
                                  zip(keys, labels, strict=True)], "validation": [], "test": []})
            started = time.perf_counter()
            index = pack(plan, store, "bench", 1, seed=0, shard_bytes=SHARD_BYTES, work_dir=root / "pack", threads=8)
            pack_seconds = time.perf_counter() - started
            shards = {shard.key: shard for shard in index.splits["train"]}
            shard_mb = sum(shard.bytes for shard in shards.values()) / len(shards) / 2**20
            print(f"packed {n_images} images into {len(shards)} shards ({shard_mb:.1f} MB each) in "
                  f"{pack_seconds:.1f} s")

            def shard_cache(name: str) -> tuple[ImageCache, object]:
                shard_cache = ImageCache(store, root / name, max_bytes=2**30)
                return shard_cache, lambda key: str(shard_cache.fetch(key, shards[key].bytes, shards[key].sha256))

            download_cache, _ = shard_cache("work-shards-bytes")
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=4) as threads:
                list(threads.map(lambda key: download_cache.fetch(key, shards[key].bytes), shards))
            download_rate = n_images / (time.perf_counter() - started)

            def shard_pipeline(fetch: object, augmented: bool):  # noqa: ANN202 - a tf.data.Dataset
                return build_shard_dataset(list(shards), fetch, OUT, BATCH,  # type: ignore[arg-type]
                                           augmentation=augmentation if augmented else None, shuffle=True)

            _, warmup_fetch = shard_cache("work-shards-bytes")
            images_per_second(shard_pipeline(warmup_fetch, False), limit=4)  # traces outside the timed runs
            images_per_second(shard_pipeline(warmup_fetch, True), limit=4)
            # (c), (b) and (d) alternate in the same rounds, so the ratios compare runs under the same load
            d_cold_runs, d_warm_runs, d_aug_runs, c_side, b_side = [], [], [], [], []
            for round_index in range(ROUNDS):
                _, cold_fetch = shard_cache(f"work-shards-cold-{round_index}")
                c_side.append(images_per_second(ceiling))
                d_cold_runs.append(images_per_second(shard_pipeline(cold_fetch, False)))
                d_warm_runs.append(images_per_second(shard_pipeline(cold_fetch, False)))
                b_side.append(images_per_second(pipeline))
                augmented = shard_pipeline(cold_fetch, True)
                # its first epoch XLA-compiles the augmentation (full and last partial batch), once per job as in
                # training and as (b)'s first epoch did: the second epoch counts
                images_per_second(augmented)
                d_aug_runs.append(images_per_second(augmented))
            d_cold, d_warm, d_aug = max(d_cold_runs)[0], max(d_warm_runs)[0], max(d_aug_runs)[0]
            c_round, b_round = max(c_side)[0], max(b_side)[0]
            objects_cold = n_images / (fill_seconds + n_images / c_round)
            print(f"(d) shards: cold {d_cold:.0f} img/s {[round(r) for r, _ in d_cold_runs]}, warm {d_warm:.0f} "
                  f"{[round(r) for r, _ in d_warm_runs]}, warm + rotation {d_aug:.0f} "
                  f"{[round(r) for r, _ in d_aug_runs]}; objects cold (fill + epoch) {objects_cold:.0f}; shard "
                  f"download {download_rate:.0f} img/s")

            # one training epoch on pipeline (b)
            from services.trainer.model import build_model, compile_model
            from shared.training import TrainingJobSpec

            epochs: list[tuple[str, float, int, float]] = []
            for backbone, steps in (("tiny_cnn", None), ("mobilenet_v3", 12 if args.quick else 30)):
                spec = TrainingJobSpec.model_validate({"data": {"dataset": "bench", "image_size": OUT},
                                                       "backbone": {"name": backbone, "weights": "none"}})
                model = build_model(spec, CLASSES)
                compile_model(model, spec.optimizer.name, 1e-3)
                model.fit(pipeline.take(2), epochs=1, verbose=0)  # warm-up: builds the train step
                started = time.perf_counter()
                run = pipeline if steps is None else pipeline.take(steps)
                model.fit(run, epochs=1, verbose=0)
                seconds = time.perf_counter() - started
                done = -(-n_images // BATCH) if steps is None else steps
                epochs.append((backbone, done / seconds, done, done * BATCH / seconds))
                print(f"training {backbone}: {done / seconds:.2f} steps/s over {done} steps")
        finally:
            stack.down(clean=True)

    load = os.getloadavg()
    rows = [
        ("(a) ImageDataGenerator.flow_from_directory, rotation_range=180 + flip (baseline)", f"{a_rate:.0f}",
         f"{a_images} images"),
        ("(b) sporeprint tf.data from S3 via disk cache (warm), rotation 180 + flip", f"{b_rate:.0f}",
         f"{b_images} images, best of {ROUNDS} epochs {[round(r) for r, _ in b_runs]}"),
        ("(c) decode + resize only (ceiling)", f"{c_rate:.0f}",
         f"{c_images} images, best of {ROUNDS} epochs {[round(r) for r, _ in c_runs]}"),
        ("cold cache fill from the S3 server (8 threads)", f"{n_images / fill_seconds:.0f}", "images/s, bytes only"),
        ("(c) again, in the rounds of (d)", f"{c_round:.0f}", f"best of {ROUNDS} {[round(r) for r, _ in c_side]}"),
        ("(b) again, in the rounds of (d)", f"{b_round:.0f}", f"best of {ROUNDS} {[round(r) for r, _ in b_side]}"),
        ("(b') per-object, cold: cache fill + one decode + resize epoch", f"{objects_cold:.0f}",
         f"{n_images} images, the fill above then (c) of the (d) rounds"),
        ("(d) shards streamed from the S3 server, cold cache, decode + resize", f"{d_cold:.0f}",
         f"{n_images} images incl. download, best of {ROUNDS} {[round(r) for r, _ in d_cold_runs]}"),
        ("(d) shards from the local cache (warm), decode + resize", f"{d_warm:.0f}",
         f"best of {ROUNDS} {[round(r) for r, _ in d_warm_runs]}"),
        ("(d) shards warm, rotation 180 + flip (as b)", f"{d_aug:.0f}",
         f"best of {ROUNDS} {[round(r) for r, _ in d_aug_runs]}"),
        ("shard download from the S3 server (4 threads)", f"{download_rate:.0f}",
         f"images/s, bytes only, {len(shards)} shards of {shard_mb:.1f} MB"),
        ("pack: S3 objects -> TFRecord shards on S3 (8 threads, once per plan)", f"{n_images / pack_seconds:.0f}",
         "images/s"),
    ]
    lines = [
        "# Training input pipeline benchmark",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, shared with other work "
        f"(load average {load[0]:.1f} / {load[1]:.1f} at the end). TensorFlow CPU. "
        f"Command: `.venv/bin/python bench/input.py{' --quick' if args.quick else ''}`.",
        "",
        f"{n_images} synthetic species JPEGs (fixtureweb, {SIZE} px, {CLASSES} classes) -> {OUT} px, batch {BATCH}.",
        "",
        "| pipeline | images/s | measured on |",
        "|---|---:|---|",
        *(f"| {name} | {rate} | {note} |" for name, rate, note in rows),
        "",
        f"- (b) / (a) = **{b_rate / a_rate:.1f}x** (target >= 5x)",
        f"- (b) / (c) = **{100 * b_rate / c_rate:.0f}%** of the decode + resize ceiling (target >= 60%)",
        "",
        "Why (b) is fast: rotation, zoom and flips are one affine map per image; after batching, the uint8 batch",
        "is resampled by batched `tf.gather` (bilinear: four gathers; outside the photo mirrored, as Keras'",
        "RandomRotation's reflect fill), XLA-compiled. On this CPU one gather was ~4x faster than",
        "`ImageProjectiveTransformV3` (what Keras' RandomRotation uses), which capped an earlier version of (b)",
        "at ~40% of (c). Decode/resize run",
        "in parallel (AUTOTUNE) and batches are prefetched, so rotating by any angle adds little over the ceiling.",
        "",
        "## Shards (issue 18)",
        "",
        f"- cold: shards (d) **{d_cold:.0f}** img/s vs per-object fill + epoch (b') **{objects_cold:.0f}** "
        f"(**{d_cold / objects_cold:.1f}x**); bytes only {download_rate:.0f} vs {n_images / fill_seconds:.0f} "
        f"img/s (**{download_rate / (n_images / fill_seconds):.1f}x**)",
        f"- warm: shards {d_warm:.0f} img/s = **{100 * d_warm / c_round:.0f}%** of the decode + resize ceiling (c) "
        f"in the same rounds; with rotation {d_aug:.0f} = {100 * d_aug / b_round:.0f}% of (b)",
        "",
        "Cold, the per-object path pays one GET per image (S3 request latency, 8 in flight) before the first",
        "epoch; shards pay one GET per few MB and stream while decoding, so the first epoch runs at about the",
        "decode rate. Warm, both read local disk and the decoder is the limit. Shards here are",
        f"{SHARD_BYTES // 2**20} MB so that ~10 of them interleave; training uses 150 MB (a setting).",
        "",
        "## One CPU training epoch on pipeline (b), weights=None, 224 px",
        "",
        "| backbone | steps/s | steps | images/s |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {rate:.2f} | {steps} | {ips:.0f} |" for name, rate, steps, ips in epochs),
        "",
        f"Peak RSS of the benchmark process: {peak_rss_mb():.0f} MB.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
