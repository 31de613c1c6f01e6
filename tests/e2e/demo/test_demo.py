"""The reduced `make demo` (what CI runs): every process real, every step over HTTP, numbers checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from sporeprint.demo import CI_SIZE, down, run_demo

pytestmark = [pytest.mark.e2e, pytest.mark.ml]


def test_reduced_demo_runs_start_to_finish(tmp_path: Path, gbif_sample: Path) -> None:
    lines: list[str] = []
    try:
        results = run_demo(tmp_path / "stack", CI_SIZE, lines.append, gbif_sample)
    finally:
        stopped = down(tmp_path / "stack")
    transcript = "\n".join(lines)
    assert results["gbif_sample"]["rows"] == 1619, transcript
    assert results["import"]["rows"] == CI_SIZE.photos, transcript
    assert results["harvest"]["ok"] > CI_SIZE.photos // 2, transcript
    # the curator flags the fixture web's herbarium-like host, and only it
    assert results["curation"]["blacklisted"] == ["herbarium-digital.test"], transcript
    assert results["curation"]["report"]["excluded"]["blacklisted"] > 0, transcript
    chance = 1 / CI_SIZE.classes
    assert results["training"]["metrics"]["top1"] > chance, transcript
    sweep_id = results["training"]["sweep_id"]  # trained as a sweep; the best run is the model served
    assert results["training"]["model_id"].startswith(sweep_id) and f"#sweeps/{sweep_id}" in transcript
    assert results["predict"]["total"] == CI_SIZE.predictions, transcript
    assert results["predict"]["correct"] >= CI_SIZE.predictions // 2, transcript  # never-seen drawn species
    assert results["predict"]["refused"] == results["predict"]["not_species"] == 3, transcript
    assert "never eat" in transcript.lower(), transcript
    assert {"downloader", "curator", "trainer", "inference", "console", "fixtureweb"} <= set(stopped)
    for step in ("[stack]", "[harvest]", "[domains]", "[curation]", "[train]", "[predict]", "[console]"):
        assert step in transcript
