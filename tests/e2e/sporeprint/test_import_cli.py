"""``sporeprint import`` and ``sporeprint manifests`` in-process against the real S3 server of the test stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from shared.settings import Settings
from sporeprint.cli import main
from tests.conftest import settings_env

pytestmark = pytest.mark.e2e


def sporeprint(tmp_path: Path, settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["--stack-dir", str(tmp_path / "no-stack"), *args], env=settings_env(settings))


def test_import_the_gbif_sample_and_read_it_back(tmp_path: Path, settings: Settings, gbif_sample: Path) -> None:
    imported = sporeprint(tmp_path, settings, "import", str(gbif_sample), "--dataset", "psilocybe",
                          "--species", "Psilocybe semilanceata", "--family", "Hymenogastraceae")
    assert imported.exit_code == 0, imported.output
    first_line, facts = imported.stdout.split("\n", 1)
    assert first_line.startswith(f"imported {gbif_sample.name} -> psilocybe v1: 1619 rows, ")
    assert json.loads(facts)["summary"]["species"] == 1

    listed = sporeprint(tmp_path, settings, "manifests", "list")
    assert listed.exit_code == 0 and listed.stdout == "psilocybe\tlatest v1\n"
    versions = sporeprint(tmp_path, settings, "manifests", "list", "psilocybe")
    assert versions.stdout.startswith("v1\timport\tparent -\t1619 rows\t"), versions.output
    shown = json.loads(sporeprint(tmp_path, settings, "manifests", "show", "psilocybe").stdout)
    assert (shown["info"]["version"], shown["summary"]["rows"]) == (1, 1619)


def test_a_bad_source_is_one_line_and_writes_nothing(tmp_path: Path, settings: Settings) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("link,name\nhttp://a.test/1.jpg,x\n")
    result = sporeprint(tmp_path, settings, "import", str(source), "--dataset", "bad")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "bad.csv" in lines[0], result.output
    assert sporeprint(tmp_path, settings, "manifests", "list").stdout == ""
