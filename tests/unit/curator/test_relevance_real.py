"""The curator's analysis through the real relevance gate on real photos (measured here, never fitted to them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.curator.analysis import analyses_to_table, analyze_bytes, reading_of
from services.curator.filter.learned import irrelevant_scores
from shared.relevance.gate import RelevanceGate, load_gate
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.unit, pytest.mark.ml]

REALPHOTOS = FIXTURES / "realphotos"
FIRST = 8


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> RelevanceGate:
    if not REALPHOTOS.is_dir():
        pytest.skip("real photos not present: ../shared/fixtures/realphotos")
    return load_gate("efficientnet_lite0", tmp_path_factory.mktemp("gate"))


def scores(gate: RelevanceGate, folder: str) -> tuple[np.ndarray, np.ndarray]:
    """(the gate's irrelevant score, the curator's score of the cached row) of the first photos of ``folder``."""
    paths = sorted((REALPHOTOS / folder).glob("*.jpg"))[:FIRST]
    assert len(paths) == FIRST, f"expected {FIRST} photos in {REALPHOTOS / folder}"
    analyses = [analyze_bytes(p.name, None, p.read_bytes(), gate) for p in paths]
    assert not any(a.broken for a in analyses)
    reading = gate.read_photos([_open(p) for p in paths])
    cached = reading_of(analyses_to_table(analyses))
    return gate.irrelevant_score(reading), irrelevant_scores(cached, None, gate.prior_log_odds)


def _open(path: Path):  # type: ignore[no-untyped-def]
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return (ImageOps.exif_transpose(image) or image).convert("RGB")


def test_field_photos_of_mushrooms_are_relevant(gate: RelevanceGate) -> None:
    direct, cached = scores(gate, "mushrooms")
    assert (direct < 0.5).mean() >= 0.8, direct
    # The cache (float16 embeddings) scores as the gate does on the decoded photo.
    assert np.abs(direct - cached).max() < 0.02


def test_herbarium_sheets_are_irrelevant(gate: RelevanceGate) -> None:
    direct, cached = scores(gate, "herbarium")
    assert (direct > 0.5).mean() >= 0.75, direct
    assert np.abs(direct - cached).max() < 0.02
