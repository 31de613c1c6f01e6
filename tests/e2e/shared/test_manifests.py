"""Manifest versions in the real S3 server: import, read back, lineage, concurrent writers."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.downloader.importers import ImportFailed, Taxon, import_source, parse_source
from shared.manifests import ManifestError, ManifestNotFound, ManifestStore
from shared.schemas import Operation

pytestmark = pytest.mark.e2e

PSILOCYBE = Taxon("Psilocybe semilanceata", family="Hymenogastraceae")


def test_gbif_sample_imports_and_reads_back_identical(gbif_sample: Path, manifests: ManifestStore) -> None:
    info = import_source(gbif_sample, "psilocybe", manifests, PSILOCYBE)
    assert (info.version, info.parent, info.operation, info.rows) == (1, None, Operation.import_, 1619)
    assert manifests.read("psilocybe").equals(parse_source(gbif_sample, PSILOCYBE).table)
    assert manifests.info("psilocybe") == info
    assert manifests.store.exists("manifests/psilocybe/000001.parquet")


def test_reimport_creates_a_new_version_with_same_ids(gbif_sample: Path, manifests: ManifestStore) -> None:
    first = import_source(gbif_sample, "psilocybe", manifests, PSILOCYBE)
    second = import_source(gbif_sample, "psilocybe", manifests, PSILOCYBE)
    assert (second.version, second.parent) == (2, 1)
    assert second.content_hash == first.content_hash
    v1, v2 = manifests.read("psilocybe", 1), manifests.read("psilocybe", 2)
    assert v1.column("image_id").to_pylist() == v2.column("image_id").to_pylist()
    assert [v.version for v in manifests.versions("psilocybe")] == [1, 2]
    assert manifests.datasets() == ["psilocybe"]


def test_derived_version_never_edits_its_parent(gbif_sample: Path, manifests: ManifestStore) -> None:
    base = import_source(gbif_sample, "psilocybe", manifests, PSILOCYBE)
    table = manifests.read("psilocybe", base.version)
    harvested = table.set_column(
        table.schema.get_field_index("status"), "status", [["ok"] * table.num_rows]
    )
    child = manifests.write("psilocybe", harvested, Operation.harvest, parent=base.version)
    assert child.parent == base.version
    assert set(manifests.read("psilocybe", base.version).column("status").to_pylist()) == {"pending", "skipped"}
    assert set(manifests.read("psilocybe").column("status").to_pylist()) == {"ok"}


def test_concurrent_writers_get_distinct_versions(gbif_sample: Path, manifests: ManifestStore) -> None:
    table = parse_source(gbif_sample, PSILOCYBE).table.slice(0, 50)
    with ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(lambda _: manifests.write("race", table, Operation.import_), range(6)))
    assert sorted(info.version for info in infos) == [1, 2, 3, 4, 5, 6]
    assert manifests.latest_version("race") == 6


def test_unknown_dataset_and_version(manifests: ManifestStore) -> None:
    with pytest.raises(ManifestNotFound, match="has no manifest"):
        manifests.info("nothing-here")
    with pytest.raises(ManifestError, match="invalid dataset name"):
        manifests.info("../etc")


def test_bad_file_writes_nothing(tmp_path: Path, manifests: ManifestStore) -> None:
    bad = tmp_path / "multimedia.txt"
    bad.write_bytes(b"gbifID\tidentifier\n1\thttp://a.org/x.jpg\n2\thttp://a.org/\xff.jpg\n")
    with pytest.raises(ImportFailed, match="line 3"):
        import_source(bad, "broken", manifests)
    assert list(manifests.store.list("manifests/")) == []
