"""The curator's analysis through the real relevance gate on real photos (measured here, never fitted to them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.curator.analysis import analyses_to_table, analyze_bytes, reading_of
from services.curator.filter.learned import irrelevant_scores
from shared.relevance.gate import RelevanceGate, load_gate

pytestmark = [pytest.mark.unit, pytest.mark.ml]

FIRST = 8


@pytest.fixture(scope="module")
def gate(real_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> RelevanceGate:
    """The real gate; skipped, saying why, by the ``real_photos`` fixture when the photos are absent."""
    return load_gate("efficientnet_lite0", tmp_path_factory.mktemp("gate"))


def scores(gate: RelevanceGate, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(the gate's irrelevant score, the curator's score of the cached row) of the first photos of ``folder``."""
    paths = sorted(folder.glob("*.jpg"))[:FIRST]
    assert len(paths) == FIRST, f"expected {FIRST} photos in {folder}"
    analyses = [analyze_bytes(p.name, None, p.read_bytes(), gate) for p in paths]
    assert not any(a.broken for a in analyses)
    reading = gate.read_photos([_open(p) for p in paths])
    cached = reading_of(analyses_to_table(analyses))
    return gate.irrelevant_score(reading), irrelevant_scores(cached, None, gate.prior_log_odds)


def _open(path: Path):  # type: ignore[no-untyped-def]
    from PIL import Image

    from shared.imaging import upright_rgb

    with Image.open(path) as image:
        return upright_rgb(image)


def test_field_photos_of_mushrooms_are_relevant(gate: RelevanceGate, real_photos: Path) -> None:
    direct, cached = scores(gate, real_photos / "mushrooms")
    assert (direct < 0.5).mean() >= 0.8, direct
    # The cache (float16 embeddings) scores as the gate does on the decoded photo.
    assert np.abs(direct - cached).max() < 0.02


def test_herbarium_sheets_are_irrelevant(gate: RelevanceGate, real_photos: Path) -> None:
    direct, cached = scores(gate, real_photos / "herbarium")
    assert (direct > 0.5).mean() >= 0.75, direct
    assert np.abs(direct - cached).max() < 0.02
