"""Benchmark: importing a 2,300,000-row GBIF download (rows/s, peak RSS).

Generates a GBIF-shaped Darwin Core Archive (occurrence.txt + multimedia.txt + meta.xml, zipped)
and a bare multimedia.txt, then imports each in a fresh process: parsing alone, and the whole
import into a manifest version on a real S3 server (the local SeaweedFS stack).
Target (issue 2): >= 200,000 rows/s and < 2 GB peak RSS on a 2-core machine.

    python bench/import_gbif.py --rows 2300000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from machine import cpu_model  # bench/ is on sys.path when a script runs

RESULTS = Path(__file__).parent / "results" / "import.md"
MULTIMEDIA_COLUMNS = ["gbifID", "type", "format", "identifier", "references", "title", "description", "source",
                      "audience", "created", "creator", "contributor", "publisher", "license", "rightsHolder"]
DOMAINS = ["inaturalist-open-data.s3.amazonaws.com", "svampe.databasen.org", "www.artportalen.se",
           "observation.org", "media.canadensys.net", "www.artsobservasjoner.no", "mushroomobserver.org"]
LICENCES = ["http://creativecommons.org/licenses/by-nc/4.0/", "http://creativecommons.org/licenses/by/4.0/",
            "© All rights reserved", ""]
META = """<?xml version="1.0" encoding="utf-8"?>
<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="metadata.xml">
  <core encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" ignoreHeaderLines="1"
        rowType="http://rs.tdwg.org/dwc/terms/Occurrence"><files><location>occurrence.txt</location></files>
    <id index="0"/></core>
  <extension encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" ignoreHeaderLines="1"
        rowType="http://rs.gbif.org/terms/1.0/Multimedia"><files><location>multimedia.txt</location></files>
    <coreid index="0"/></extension>
</archive>
"""


def _write_tsv(table: pa.Table, path: Path) -> None:
    # pyarrow quotes header names whatever the quoting style, and GBIF files are unquoted
    with open(path, "wb") as sink:
        sink.write(("\t".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, sink, pacsv.WriteOptions(
            delimiter="\t", quoting_style="none", batch_size=200_000, include_header=False))


def generate(rows: int, directory: Path) -> tuple[Path, Path]:
    """A DwC-A zip and a bare multimedia.txt with ``rows`` photo rows (~3 per observation)."""
    rng = np.random.default_rng(42)
    observations = rows // 3
    gbif_ids = (np.arange(observations, dtype=np.int64) + 1_000_000_000)
    photo_obs = np.sort(rng.integers(0, observations, rows))
    species_idx = rng.zipf(1.3, observations) % 5000
    occurrence = pa.table({
        "gbifID": pa.array(gbif_ids.astype(str)),
        "basisOfRecord": pa.array(np.where(rng.random(observations) < 0.9, "HUMAN_OBSERVATION", "PRESERVED_SPECIMEN")),
        "scientificName": pc.binary_join_element_wise("Genus", pa.array((species_idx // 8).astype(str)), " species",
                                                      pa.array(species_idx.astype(str)), " L.", ""),
        "family": pc.binary_join_element_wise("Family", pa.array((species_idx // 200).astype(str)), ""),
        "genus": pc.binary_join_element_wise("Genus", pa.array((species_idx // 8).astype(str)), ""),
        "species": pc.binary_join_element_wise("Genus", pa.array((species_idx // 8).astype(str)), " species",
                                               pa.array(species_idx.astype(str)), ""),
    })
    ids = pa.array(gbif_ids[photo_obs].astype(str))
    domain = pa.array(np.array(DOMAINS)[rng.integers(0, len(DOMAINS), rows)])
    photo = pa.array(np.arange(rows).astype(str))
    url = pc.binary_join_element_wise("https://", domain, "/photos/", photo, "/original.jpeg", "")
    empty = pa.array(np.full(rows, ""))
    multimedia = pa.table({
        "gbifID": ids, "type": pa.array(np.full(rows, "StillImage")), "format": pa.array(np.full(rows, "image/jpeg")),
        "identifier": url, "references": pc.binary_join_element_wise("https://www.inaturalist.org/photos/", photo, ""),
        "title": empty, "description": empty, "source": empty, "audience": empty,
        "created": pa.array(np.full(rows, "2023-11-04T21:33:52Z")),
        "creator": pc.binary_join_element_wise("Observer ", pa.array((photo_obs % 9973).astype(str)), ""),
        "contributor": empty, "publisher": pa.array(np.full(rows, "iNaturalist")),
        "license": pa.array(np.array(LICENCES)[rng.integers(0, len(LICENCES), rows)]),
        "rightsHolder": pc.binary_join_element_wise("Observer ", pa.array((photo_obs % 9973).astype(str)), ""),
    })
    bare = directory / "multimedia.txt"
    _write_tsv(multimedia, bare)
    _write_tsv(occurrence, directory / "occurrence.txt")
    archive = directory / "gbif-download.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("meta.xml", META)
        zf.write(directory / "occurrence.txt", "occurrence.txt")
        zf.write(bare, "multimedia.txt")
    (directory / "occurrence.txt").unlink()
    return archive, bare


def _measure(mode: str, path: Path, env: dict[str, str]) -> dict[str, float]:
    """Run one import in a fresh process so its peak RSS is its own."""
    code = f"""
import json, resource, sys, time
from pathlib import Path
from services.downloader.importers import Taxon, import_source, parse_source
path = Path({str(path)!r})
taxon = Taxon("Genus1 species1") if path.suffix == ".txt" else None
start = time.perf_counter()
if {mode!r} == "parse":
    rows = parse_source(path, taxon).table.num_rows
else:
    from shared.manifests import ManifestStore
    from shared.settings import Settings
    from shared.storage import ObjectStore
    store = ObjectStore.from_settings(Settings())
    store.ensure_bucket()
    rows = import_source(path, "bench", ManifestStore(store), taxon).rows
seconds = time.perf_counter() - start
print(json.dumps({{"rows": rows, "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_300_000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sporeprint.stack import LocalStack

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        archive, bare = generate(args.rows, directory)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - start:.1f} s "
              f"(zip {archive.stat().st_size / 1e6:.0f} MB, multimedia.txt {bare.stat().st_size / 1e6:.0f} MB)")
        stack = LocalStack(directory / "stack")
        state = stack.up()
        try:
            env = {**state.env(), "SPOREPRINT_ENVIRONMENT": "development"}
            results = []
            for label, mode, path in [
                ("DwC-A zip: parse (join occurrence, ids, dedupe)", "parse", archive),
                ("DwC-A zip: full import to a manifest on S3", "import", archive),
                ("bare multimedia.txt: parse", "parse", bare),
                ("bare multimedia.txt: full import to a manifest on S3", "import", bare),
            ]:
                result = _measure(mode, path, env)
                result["rows_per_s"] = result["rows"] / result["seconds"]
                results.append((label, result))
                print(f"{label}: {result['rows']:,} rows in {result['seconds']:.1f} s = "
                      f"{result['rows_per_s']:,.0f} rows/s, peak RSS {result['peak_rss_mb']:.0f} MB")
        finally:
            stack.down()
    lines = [
        "# GBIF import benchmark", "",
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, "
        f"pyarrow {pa.__version__}. Rows: {args.rows:,} photo rows (~3 per observation), 15 multimedia columns.",
        "Target (issue 2): >= 200,000 rows/s and < 2,048 MB peak RSS.", "",
        "| import | rows | seconds | rows/s | peak RSS (MB) | target met |", "|---|---:|---:|---:|---:|---|",
    ]
    for label, result in results:
        met = result["rows_per_s"] >= 200_000 and result["peak_rss_mb"] < 2048
        lines.append(f"| {label} | {result['rows']:,.0f} | {result['seconds']:.1f} | {result['rows_per_s']:,.0f} | "
                     f"{result['peak_rss_mb']:.0f} | {'yes' if met else 'no'} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
