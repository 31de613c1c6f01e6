"""The `fixtures` CLI (build, serve, sheet) and the typed web configuration."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from pydantic import ValidationError

from fixtureweb.cli import fixtures_cli
from fixtureweb.config import DomainConfig, Latency, WebConfig, preset
from fixtureweb.faults import Fault

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]


def test_sheet_writes_a_labelled_png(tmp_path):
    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(fixtures_cli, ["sheet", str(out), "--classes", "4", "--per-class", "2",
                                               "--per-kind", "2", "--tile", "48"])
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    assert image.format == "PNG"
    # 4 species rows + 4 irrelevant rows of 48 px tiles, plus the title line.
    assert image.height >= 8 * 48 and image.width > 2 * 48


def test_build_materialises_everything(tmp_path):
    result = CliRunner().invoke(fixtures_cli, ["build", str(tmp_path), "--classes", "3", "--domains", "4",
                                               "--herbarium", "1", "--photos", "40", "--per-class", "2",
                                               "--per-kind", "1", "--size", "48", "--port", "9000"])
    assert result.exit_code == 0, result.output
    species_dirs = sorted(p for p in (tmp_path / "species").iterdir())
    assert len(species_dirs) == 3 and all(len(list(d.glob("*.jpg"))) == 2 for d in species_dirs)
    assert len(list((tmp_path / "irrelevant").glob("*/*.jpg"))) == 4
    for name in ("gbif/gbif_export.zip", "gbif/truth.parquet", "gbif/images.csv", "web.json", "species.csv"):
        assert (tmp_path / name).is_file(), name
    web = WebConfig.load(tmp_path / "web.json")
    assert len(web.domains) == 4 and web.n_classes == 3
    assert ":9000/media/" in (tmp_path / "gbif" / "images.csv").read_text()


def test_bad_cli_input():
    runner = CliRunner()
    assert runner.invoke(fixtures_cli, ["build", "/tmp/x", "--classes", "0"]).exit_code == 2
    assert runner.invoke(fixtures_cli, ["sheet", "--classes", "101"]).exit_code == 2
    assert runner.invoke(fixtures_cli, ["serve", "--config", "/no/such/file.json"]).exit_code == 2


def test_serve_subprocess_prints_its_url(tmp_path):
    config = WebConfig(n_classes=2, domains=(DomainConfig(name="a.test", latency=Latency(median_ms=0),
                                                          image_size=32),))
    config.dump(tmp_path / "web.json")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "fixtureweb", "serve", "--config", str(tmp_path / "web.json"),
                                "--port", "0"], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("fixture web on http://127.0.0.1:"), first
        base = first.split()[3]
        body = urllib.request.urlopen(f"{base}/a.test/species/1/1.jpg", timeout=10).read()
        assert Image.open(io.BytesIO(body)).format == "JPEG"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_config_round_trip_and_lookup(tmp_path):
    web = preset(6, 2, n_classes=12, seed=4)
    web.dump(tmp_path / "web.json")
    assert WebConfig.load(tmp_path / "web.json") == web
    assert sum(d.specimen_host for d in web.domains) == 2
    assert web.domain("FUNGI-ATLAS.test").name == "fungi-atlas.test"
    with pytest.raises(KeyError):
        web.domain("nope.test")
    big = preset(30, 8)
    assert len(set(big.domain_names)) == 30


@pytest.mark.parametrize("bad", [
    {"name": "http://a.test"},
    {"name": "a.test:80"},
    {"name": ""},
    {"name": "a.test", "fault_rates": {Fault.NOT_FOUND: 0.7, Fault.HTML: 0.5}},
    {"name": "a.test", "fault_rates": {Fault.NOT_FOUND: -0.1}},
    {"name": "a.test", "irrelevant_share": 1.5},
    {"name": "a.test", "unknown_knob": 1},
    {"name": "a.test", "latency": {"median_ms": -1}},
])
def test_bad_domain_configs_are_refused(bad):
    with pytest.raises(ValidationError):
        DomainConfig(**bad)


def test_bad_web_configs_are_refused():
    a = DomainConfig(name="a.test")
    with pytest.raises(ValidationError):
        WebConfig(domains=(a, a))
    with pytest.raises(ValidationError):
        WebConfig(domains=())
    with pytest.raises(ValidationError):
        WebConfig(domains=(a,), n_classes=0)
    with pytest.raises(ValueError):
        preset(3, 4)


def test_latency_sampling():
    import random

    rng = random.Random(1)
    assert Latency(median_ms=50, sigma=0).sample_s(rng) == 0.05
    assert Latency(median_ms=0).sample_s(rng) == 0.0
    samples = sorted(Latency(median_ms=20, sigma=0.5, max_ms=100).sample_s(rng) for _ in range(2001))
    assert 0.017 < samples[1000] < 0.023 and samples[-1] <= 0.1
