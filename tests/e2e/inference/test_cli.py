"""``sporeprint predict`` against the real inference service: the verdict in words and the top-k, the same
answer as the API gives, ``--json``, and one clear line for a photo the service refuses."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from sporeprint.cli import main

from .conftest import Served, encode, species_photo

pytestmark = pytest.mark.e2e


def run(served: Served, tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--stack-dir", str(tmp_path / "no-stack"), "predict", "--url", served.url,
                                       *args])
    return result.exit_code, result.output


def test_predict_names_the_same_species_as_the_api(served: Served, tmp_path: Path) -> None:
    photo = tmp_path / "chanterelle.jpg"
    photo.write_bytes(encode(species_photo(2, seed=7)))
    api = httpx.post(f"{served.url}/predict", files={"file": ("p.jpg", photo.read_bytes(), "image/jpeg")},
                     params={"top_k": 3}, timeout=60).json()
    code, output = run(served, tmp_path, str(photo), "--top-k", "3")
    assert code == 0, output
    lines = output.strip().splitlines()
    assert lines[0].startswith(f"{photo}: {api['verdict'].replace('_', ' ')} - ")
    shown = [line for line in lines[1:] if line.startswith("  ")]
    assert len(shown) == len(api["predictions"]) == 3
    for line, guess in zip(shown, api["predictions"], strict=True):
        assert line.endswith(f" {guess['label']}") and line.strip().startswith(f"{guess['probability']:.1%}")
    assert lines[-1] == api["safety_notice"]

    code, output = run(served, tmp_path, str(photo), str(photo), "--json", "--top-k", "2")
    assert code == 0, output
    answers = json.loads(output)
    assert [answer["photo"] for answer in answers] == [str(photo), str(photo)]
    assert [guess["label"] for guess in answers[0]["predictions"]] == [
        guess["label"] for guess in api["predictions"][:2]]


def test_a_file_that_is_not_a_photo_is_one_line(served: Served, tmp_path: Path) -> None:
    receipt = tmp_path / "receipt.txt"
    receipt.write_text("TOTAL 12.50 EUR\n")
    code, output = run(served, tmp_path, str(receipt))
    assert code == 1
    assert len(output.strip().splitlines()) == 1 and output.startswith("Error: inference refused"), output
    code, output = run(served, tmp_path)
    assert code == 2 and "give at least one photo" in output
