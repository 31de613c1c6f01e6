"""The relevance probe's fitting and sign convention on synthetic gate readings, the analysis cache's schema,
and what the image statistics measure. (Judgements of real photos: test_relevance_real.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from services.curator.analysis import (
    CACHE_SCHEMA,
    analyses_to_table,
    analyze_bytes,
    conform_cache,
    read_cache,
    reading_of,
)
from services.curator.filter.learned import cache_irrelevant_scores, fit_probe, held_out, irrelevant_scores
from shared.relevance.gate import PRIOR_LOGIT, GateReading
from shared.relevance.probe import sigmoid
from shared.relevance.stats import FEATURE_NAMES, image_features, statistics_score
from shared.storage import ObjectNotFound
from tests.unit.curator.conftest import PlumbingGate

pytestmark = pytest.mark.unit


def probability(log_odds: np.ndarray) -> np.ndarray:
    """The fungus-class probability whose zero-shot log-odds (against the 8/1000 prior) is ``log_odds``."""
    return sigmoid(np.asarray(log_odds) + PRIOR_LOGIT)


def readings(groups: list[tuple[int, float, int]], seed: int = 0) -> GateReading:
    """One cluster per group (n, zero-shot log-odds, cluster number): like a pretrained embedding, a cluster
    differs from the others a little in every dimension, and its members spread around its centre."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1000).normal(0, 1, (8, 1280)) / np.sqrt(1280)
    parts = []
    for n, log_odds, cluster in groups:
        embedding = centres[cluster] + rng.normal(0, 0.02, (n, 1280))
        parts.append((np.full(n, log_odds) + rng.normal(0, 0.3, n), embedding))
    z = np.concatenate([p[0] for p in parts])
    embedding = np.concatenate([p[1] for p in parts])
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    total = len(z)
    return GateReading(probability(z), embedding.astype(np.float32), np.zeros(total, np.int32),
                       rng.uniform(0, 1, (total, len(FEATURE_NAMES))).astype(np.float32), np.zeros(total, bool))


def subset(reading: GateReading, mask: np.ndarray) -> GateReading:
    return GateReading(*(getattr(reading, name)[mask] for name in
                         ("fungus_probability", "embedding", "top_class", "stats", "blank")))


def test_scores_follow_the_gate_sign_convention() -> None:
    reading = readings([(4, 3.0, 0), (4, -3.0, 1)])
    zero_shot = irrelevant_scores(reading, None, 0.0)
    assert zero_shot == pytest.approx(1 - sigmoid(reading.zero_shot_log_odds))
    assert (zero_shot[:4] < 0.2).all() and (zero_shot[4:] > 0.8).all()
    # A prior that fungi are common makes every photo more relevant.
    assert (irrelevant_scores(reading, None, 2.0) < zero_shot).all()
    blank = GateReading(reading.fungus_probability, reading.embedding, reading.top_class, reading.stats,
                        np.arange(8) == 0)
    assert irrelevant_scores(blank, None, 0.0)[0] == 1.0  # a flat colour is not a photo of anything


def test_a_probe_trained_on_labels_that_agree_with_zero_shot_flips_nothing() -> None:
    reading = readings([(60, 3.0, 0), (60, -4.0, 1)])
    irrelevant = np.r_[np.zeros(60), np.ones(60)]
    ids = [f"agree-{i}" for i in range(120)]
    probe = fit_probe(ids, reading, irrelevant, "test-model", 0.0)
    with_probe = irrelevant_scores(reading, probe, 0.0)
    zero_shot = irrelevant_scores(reading, None, 0.0)
    assert ((with_probe > 0.5) == (zero_shot > 0.5)).all()
    assert ((with_probe > 0.5) == (irrelevant > 0.5)).all()
    assert probe.held_out > 0 and probe.held_out_precision == 1.0 and probe.held_out_recall == 1.0
    assert (probe.held_out_zero_shot_precision, probe.held_out_zero_shot_recall) == (1.0, 1.0)
    assert (probe.human_labels, probe.irrelevant_labels, probe.pretrained) == (120, 60, "test-model")


def test_labels_that_consistently_disagree_move_the_score() -> None:
    """Picked mushrooms on white paper: zero-shot says irrelevant, people say relevant, and the embedding
    knows them apart from herbarium sheets, which both say are irrelevant."""
    reading = readings([(50, 3.0, 0), (50, -2.0, 2), (50, -4.0, 1)], seed=1)
    irrelevant = np.r_[np.zeros(50), np.zeros(50), np.ones(50)]
    on_paper = np.r_[np.zeros(50, bool), np.ones(50, bool), np.zeros(50, bool)]
    ids = [f"paper-{i}" for i in range(150)]
    probe = fit_probe(ids, reading, irrelevant, "test-model", 0.0)
    test = np.array([held_out(i) for i in ids])
    assert (test & on_paper).sum() >= 5
    before = irrelevant_scores(subset(reading, test & on_paper), None, 0.0)
    after = irrelevant_scores(subset(reading, test & on_paper), probe, 0.0)
    assert (before > 0.5).all() and (after < before).all() and (after < 0.5).mean() >= 0.8
    sheets = test & (irrelevant > 0.5)
    assert (irrelevant_scores(subset(reading, sheets), probe, 0.0) > 0.5).all()  # sheets stay irrelevant
    assert probe.held_out_zero_shot_precision is not None and probe.held_out_precision is not None
    assert probe.held_out_precision > probe.held_out_zero_shot_precision


def test_the_probe_corrects_in_the_direction_the_labels_disagree() -> None:
    """The sign convention itself: with features that say nothing, only the probe's bias can move, and it
    must move the gate's score toward what people said. (A probe fitted with the offset's sign flipped fits
    its own objective equally well but pushes the gate the other way.)"""
    n = 80
    rng = np.random.default_rng(3)
    constant = GateReading(probability(rng.uniform(1.5, 2.5, n)), np.ones((n, 1280), np.float32) / np.sqrt(1280),
                           np.zeros(n, np.int32), np.zeros((n, len(FEATURE_NAMES)), np.float32), np.zeros(n, bool))
    ids = [f"const-{i}" for i in range(n)]
    said_irrelevant = (np.arange(n) % 2).astype(float)  # zero-shot: relevant; people: half of them are not
    probe = fit_probe(ids, constant, said_irrelevant, "m", 0.0)
    before = irrelevant_scores(constant, None, 0.0)
    after = irrelevant_scores(constant, probe, 0.0)
    assert (before < 0.25).all() and (after > before + 0.15).all()


def test_probe_refuses_one_class_only_and_the_split_is_deterministic() -> None:
    reading = readings([(10, 3.0, 0)])
    with pytest.raises(ValueError, match="all of one class"):
        fit_probe([f"x{i}" for i in range(10)], reading, np.zeros(10), "m", 0.0)
    ids = [f"image-{i}" for i in range(2000)]
    assert [held_out(i) for i in ids] == [held_out(i) for i in ids]
    assert 0.2 < np.mean([held_out(i) for i in ids]) < 0.3


def tiny_jpeg(colour: tuple[int, int, int], noise: float = 20.0, seed: int = 0) -> bytes:
    import io

    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(colour, noise, (80, 96, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG")
    return out.getvalue()


def test_cache_rows_round_trip_and_score_like_the_gate(tmp_path: Path, plumbing_gate: PlumbingGate) -> None:
    analyses = [analyze_bytes("a", "sa", tiny_jpeg((60, 120, 40)), plumbing_gate),
                analyze_bytes("b", "sb", b"not an image", plumbing_gate),
                analyze_bytes("c", "sc", tiny_jpeg((128, 128, 128), noise=0.0), plumbing_gate)]  # flat grey
    table = analyses_to_table(analyses)
    assert table.schema.equals(CACHE_SCHEMA)
    pq.write_table(table, tmp_path / "scores.parquet", compression="zstd")
    again = conform_cache(pq.read_table(tmp_path / "scores.parquet"))
    assert again is not None and again.schema.equals(CACHE_SCHEMA)
    assert again.column("broken").to_pylist() == [False, True, False]
    assert again.column("embedding").to_pylist()[1] is None
    assert again.column("blank").to_pylist() == [False, None, True]
    good = again.filter(pa.array([True, False, True]))
    reading = reading_of(good)
    assert reading.embedding.shape == (2, 1280) and reading.stats.shape == (2, len(FEATURE_NAMES))
    assert reading.stats[0] == pytest.approx(analyses[0].stats)
    scores = cache_irrelevant_scores(tmp_path / "scores.parquet", None, 0.0)
    assert scores.num_rows == 2  # broken rows carry no score
    assert scores.column("irrelevant_score").to_pylist() == pytest.approx([1 - sigmoid(-PRIOR_LOGIT), 1.0])


class OneFileStore:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def get_file(self, key: str, destination: Path) -> None:
        if self.path is None:
            raise ObjectNotFound(key)
        destination.write_bytes(self.path.read_bytes())


def test_an_older_cache_counts_as_not_analysed(tmp_path: Path) -> None:
    old = pa.table({"image_id": ["a"], "sha256": ["s"], "broken": [False], "stage1": pa.array([0.2], pa.float32())})
    pq.write_table(old, tmp_path / "old.parquet")
    assert read_cache(OneFileStore(tmp_path / "old.parquet"), "fungi").num_rows == 0  # type: ignore[arg-type]
    assert read_cache(OneFileStore(None), "fungi", ["image_id"]).column_names == ["image_id"]  # type: ignore[arg-type]


def noisy(colour: tuple[int, int, int], spread: float, size: tuple[int, int] = (200, 150)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(np.clip(rng.normal(colour, spread, (*size, 3)), 0, 255).astype(np.uint8))


def test_statistics_measure_paper_and_green() -> None:
    names = list(FEATURE_NAMES)
    paper = image_features(noisy((235, 235, 235), 4))
    moss = image_features(noisy((60, 120, 40), 30))
    assert paper[names.index("paper_share")] > 0.9 and moss[names.index("paper_share")] < 0.1
    assert moss[names.index("green_share")] > 0.5 and paper[names.index("green_share")] < 0.05
    assert moss[names.index("mean_saturation")] > paper[names.index("mean_saturation")]


@pytest.mark.parametrize("image", [
    Image.new("RGB", (1, 1), (255, 255, 255)),
    Image.new("L", (300, 20), 128),
    Image.new("RGBA", (50, 80), (10, 200, 30, 0)),
    Image.new("CMYK", (64, 64)),
    Image.new("P", (2000, 3)),
])
def test_statistics_of_any_image(image: Image.Image) -> None:
    features = image_features(image)
    assert features.shape == (len(FEATURE_NAMES),) and np.isfinite(features).all()
    score = statistics_score(image)
    assert isinstance(score, float) and 0.0 <= score <= 1.0
