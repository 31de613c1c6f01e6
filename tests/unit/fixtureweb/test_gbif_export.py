"""The GBIF-shaped export: read back with plain csv and pyarrow, checked against its ground truth."""

from __future__ import annotations

import csv
import io
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from fixtureweb.config import DomainConfig, Latency, WebConfig, preset
from fixtureweb.gbif_export import (
    MULTIMEDIA_COLUMNS,
    OCCURRENCE_COLUMNS,
    ExportConfig,
    ExportResult,
    build_export,
    plan_export,
    read_truth,
)
from fixtureweb.web import FixtureWeb

pytestmark = pytest.mark.unit
REAL_SAMPLE = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "gbif" / \
    "multimedia_psilocybe_semilanceata.txt"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    web = preset(20, 3, n_classes=30, seed=5)
    return build_export(web, tmp_path_factory.mktemp("export"), ExportConfig(total_photos=3000, seed=5, port=9999))


def tsv(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    text = archive.read(name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))


def test_archive_layout_and_columns(export):
    with zipfile.ZipFile(export.zip_path) as archive:
        assert set(archive.namelist()) == {"occurrence.txt", "multimedia.txt", "meta.xml", "metadata.xml"}
        header = archive.read("multimedia.txt").decode().split("\n", 1)[0].split("\t")
        assert tuple(header) == MULTIMEDIA_COLUMNS
        if REAL_SAMPLE.exists():  # the same 15 columns, in the same order, as a real GBIF download
            assert tuple(REAL_SAMPLE.read_text().split("\n", 1)[0].split("\t")) == MULTIMEDIA_COLUMNS
        occurrence = tsv(archive, "occurrence.txt")
        multimedia = tsv(archive, "multimedia.txt")
    assert tuple(occurrence[0]) == OCCURRENCE_COLUMNS
    for column in ("gbifID", "basisOfRecord", "scientificName", "kingdom", "phylum", "class", "order", "family",
                   "genus", "species", "taxonRank", "countryCode", "eventDate"):
        assert column in OCCURRENCE_COLUMNS
    assert len(multimedia) == export.photos == 3000
    assert len(occurrence) == export.observations
    assert {r["type"] for r in multimedia} == {"StillImage"}
    assert {r["kingdom"] for r in occurrence} == {"Fungi"} and {r["taxonRank"] for r in occurrence} == {"SPECIES"}
    ids = {r["gbifID"] for r in occurrence}
    assert len(ids) == len(occurrence) and {r["gbifID"] for r in multimedia} == ids


def test_readable_by_pyarrow(export):
    with zipfile.ZipFile(export.zip_path) as archive:
        data = archive.read("multimedia.txt")
    table = pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False))
    assert table.num_rows == 3000 and tuple(table.column_names) == MULTIMEDIA_COLUMNS


def test_meta_xml_describes_both_files(export):
    with zipfile.ZipFile(export.zip_path) as archive:
        root = ET.fromstring(archive.read("meta.xml"))
    ns = {"d": "http://rs.tdwg.org/dwc/text/"}
    core = root.find("d:core", ns)
    ext = root.find("d:extension", ns)
    assert core is not None and ext is not None
    assert core.find("d:files/d:location", ns).text == "occurrence.txt"
    assert ext.find("d:files/d:location", ns).text == "multimedia.txt"
    assert ext.get("rowType") == "http://rs.gbif.org/terms/1.0/Multimedia"
    terms = [f.get("term") for f in ext.findall("d:field", ns)]
    assert len(terms) == 15 and terms[3] == "http://purl.org/dc/terms/identifier"
    assert len(core.findall("d:field", ns)) == len(OCCURRENCE_COLUMNS)


def test_several_photos_per_observation_and_long_tail(export):
    truth = read_truth(export.truth_path)
    per_observation = Counter(t.gbif_id for t in truth)
    assert max(per_observation.values()) > 1
    assert sum(1 for n in per_observation.values() if n > 1) > 0.2 * len(per_observation)
    per_class = sorted(Counter(t.species for t in truth).values(), reverse=True)
    assert len(per_class) == 30
    assert per_class[0] > 10 * per_class[-1]  # a few big classes ...
    assert sum(per_class[:5]) > 0.4 * sum(per_class)  # ... hold much of the data
    assert per_class[-1] >= 1


def test_licences_and_urls(export):
    with zipfile.ZipFile(export.zip_path) as archive:
        multimedia = tsv(archive, "multimedia.txt")
    licences = Counter(r["license"] for r in multimedia)
    assert licences["© All rights reserved"] > 0
    assert any(lic.startswith("http://creativecommons.org/") for lic in licences)
    assert all(r["identifier"].startswith("http://") and ":9999/media/" in r["identifier"] for r in multimedia)
    assert all(r["format"] in ("image/jpeg", "image/png", "image/webp") for r in multimedia)


def test_herbarium_domains_serve_mostly_irrelevant_images(export):
    truth = read_truth(export.truth_path)
    web = preset(20, 3, n_classes=30, seed=5)
    for domain in web.domains:
        rows = [t for t in truth if t.domain == domain.name]
        if len(rows) < 30:
            continue
        share = sum(t.irrelevant for t in rows) / len(rows)
        if domain.specimen_host:
            assert 0.6 < share < 0.95, domain.name
        else:
            assert share < 0.1, domain.name
    assert sum(1 for t in truth if t.irrelevant) > 50


def test_truth_records_faults_and_duplicates(export):
    table = pq.read_table(export.truth_path)
    for column in ("url", "gbif_id", "domain", "species", "irrelevant", "irrelevant_kind", "fault", "usable",
                   "duplicate_of"):
        assert column in table.column_names
    truth = read_truth(export.truth_path)
    faults = Counter(t.fault for t in truth)
    assert faults[""] > 0.8 * len(truth) and faults["not-found"] > 0
    duplicates = [t for t in truth if t.duplicate_of]
    assert duplicates
    urls = {t.url for t in truth}
    assert all(t.duplicate_of in urls and t.duplicate_of != t.url for t in duplicates)
    assert all(not t.usable for t in truth if t.irrelevant or t.fault == "not-found")


def test_plain_csv(export):
    rows = list(csv.DictReader(export.csv_path.open()))
    assert list(rows[0]) == ["url", "label", "observation_id"]
    assert len(rows) == 3000
    truth = {t.url: t for t in read_truth(export.truth_path)}
    assert all(truth[r["url"]].species == r["label"] for r in rows)


def test_export_is_deterministic_and_path_style():
    web = preset(5, 1, n_classes=5)
    a = plan_export(web, ExportConfig(total_photos=200, seed=1))
    b = plan_export(web, ExportConfig(total_photos=200, seed=1))
    c = plan_export(web, ExportConfig(total_photos=200, seed=2))
    assert [p.url for o in a for p in o.photos] == [p.url for o in b for p in o.photos]
    assert [p.url for o in a for p in o.photos] != [p.url for o in c for p in o.photos]
    d = plan_export(web, ExportConfig(total_photos=50, url_style="path", port=1234))
    assert all(p.url.startswith("http://127.0.0.1:1234/") for o in d for p in o.photos)


def test_export_is_served_by_the_fixture_web(tmp_path):
    """Every URL of an export answers as its truth says (status-wise) on a live fixture web."""
    base = preset(4, 1, n_classes=4, latency_ms=0)
    web = WebConfig(n_classes=4, domains=tuple(
        DomainConfig(**{**d.model_dump(), "image_size": 48, "latency": Latency(median_ms=0)}) for d in base.domains))
    with FixtureWeb(web) as server:
        result = build_export(web, tmp_path, ExportConfig(total_photos=60, url_style="path", port=server.port))
        for truth in read_truth(result.truth_path):
            try:
                status = urllib.request.urlopen(truth.url, timeout=10).status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = -1  # a broken body or a redirect to a private address
            if truth.fault in ("", "cmyk", "grayscale", "exif-rotated", "redirect", "wrong-type"):
                assert status == 200, truth
            if truth.fault == "not-found":
                assert status == 404


def test_the_downloader_importer_reads_the_archive(export):
    importers = pytest.importorskip("services.downloader.importers")
    parsed = importers.parse_source(export.zip_path)
    assert parsed.format == importers.SourceFormat.gbif_archive
    table = parsed.table
    truth = {t.url: t for t in read_truth(export.truth_path)}
    # Duplicate URLs are distinct rows; the importer keeps every (gbifID, URL) pair.
    assert table.num_rows == len(truth)
    rows = table.select(["url", "species", "observation_id", "domain"]).to_pylist()
    assert all(truth[r["url"]].species == r["species"] for r in rows)
    assert all(str(truth[r["url"]].gbif_id) == r["observation_id"] for r in rows)
    assert all(truth[r["url"]].domain == r["domain"] for r in rows)
    csv_parsed = importers.parse_source(export.csv_path)
    assert csv_parsed.table.num_rows == len(truth)
