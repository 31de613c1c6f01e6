"""The relevance gate: the numpy checkpoint reader, the Keras port of EfficientNet-Lite0 against PyTorch's own
outputs, the conversion cache, and what the gate says about real photos (when they are present)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from shared.relevance import lite0
from shared.relevance.gate import FUNGUS_CLASSES, FUNGUS_PRIOR, GateReading, RelevanceGate
from shared.relevance.pretrained import LITE0, load_pretrained
from shared.relevance.torch_checkpoint import CheckpointError, read_legacy_state_dict

REFERENCE = Path(__file__).parent / "data" / "lite0_reference.npz"


def reference_inputs(seed: int) -> np.ndarray:
    """The fixed inputs the reference outputs were computed on (tests/unit/shared/data/README.md)."""
    noise = np.random.default_rng(seed).uniform(0, 255, (224, 224, 3))
    yy, xx = np.mgrid[0:224, 0:224] / 223.0
    gradient = np.stack([255 * xx, 255 * yy, 255 * (1 - xx) * yy], axis=-1)
    return np.stack([noise, gradient]).astype(np.float32)


def test_checkpoint_reader_refuses_anything_but_tensors(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.pth"
    with hostile.open("wb") as file:
        for header in (lite0_magic(), 1001, {"little_endian": True}):
            pickle.dump(header, file, protocol=2)
        pickle.dump(Exploit(), file, protocol=2)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_legacy_state_dict(hostile)
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_reader_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "zip.pth"
    other.write_bytes(b"PK\x03\x04 not a legacy checkpoint")
    with pytest.raises(CheckpointError):
        read_legacy_state_dict(other)


def lite0_magic() -> int:
    from shared.relevance.torch_checkpoint import MAGIC_NUMBER

    return MAGIC_NUMBER


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("touch pwned",)


@pytest.mark.ml
def test_checkpoint_has_every_tensor_of_the_architecture() -> None:
    state = read_legacy_state_dict(lite0.checkpoint_path())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    model = lite0.build_lite0()
    # every tensor is used (load_checkpoint_weights raises on a leftover) and the parameter counts agree
    assert lite0.load_checkpoint_weights(model, state) == len([k for k in state if "num_batches" not in k])
    assert model.count_params() == sum(v.size for k, v in state.items() if "num_batches" not in k)


@pytest.mark.ml
def test_port_matches_pytorch_reference_outputs(tmp_path: Path) -> None:
    reference = np.load(REFERENCE)
    inputs = reference_inputs(int(reference["seed"]))
    pretrained = load_pretrained(LITE0, tmp_path)
    embedding, logits = (np.asarray(t) for t in pretrained.keras_model()(inputs))
    np.testing.assert_allclose(embedding, reference["embedding"], rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(logits, reference["logits"], rtol=1e-3, atol=2e-3)
    assert (logits.argmax(axis=1) == reference["logits"].argmax(axis=1)).all()
    # What the gate runs: the LiteRT flatbuffer converted from the same Keras model.
    reading = RelevanceGate(pretrained).read(inputs, np.zeros((2, 14), np.float32))
    expected = np.exp(reference["logits"] - reference["logits"].max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(reading.fungus_probability, expected[:, list(FUNGUS_CLASSES)].sum(axis=1), atol=1e-5)
    unit = reference["embedding"] / np.linalg.norm(reference["embedding"], axis=1, keepdims=True)
    np.testing.assert_allclose(reading.embedding, unit, atol=1e-4)
    assert (reading.top_class == reference["logits"].argmax(axis=1)).all()


@pytest.mark.ml
def test_conversion_is_cached_with_its_checksum_and_redone_when_the_file_is_damaged(tmp_path: Path) -> None:
    first = load_pretrained(LITE0, tmp_path)
    cached = tmp_path / f"{LITE0}-imagenet.keras"
    flatbuffer = cached.with_suffix(".tflite")
    record = json.loads(cached.with_suffix(".json").read_text())
    assert record["keras_sha256"] == first.sha256 == lite0.file_sha256(cached)
    assert record["tflite_sha256"] == lite0.file_sha256(flatbuffer)
    assert record["checkpoint_sha256"].startswith(lite0.WEIGHTS_SHA256)
    converted_at = record["converted_at"]
    assert load_pretrained(LITE0, tmp_path).sha256 == first.sha256  # from the cache, not converted again
    assert json.loads(cached.with_suffix(".json").read_text())["converted_at"] == converted_at
    flatbuffer.write_bytes(b"damaged")
    again = load_pretrained(LITE0, tmp_path)
    assert lite0.file_sha256(flatbuffer) == record["tflite_sha256"] != lite0.file_sha256_of_bytes(b"damaged")
    assert json.loads(cached.with_suffix(".json").read_text())["converted_at"] != converted_at
    assert again.flatbuffer == flatbuffer.read_bytes()


def test_zero_shot_decision_is_the_prior_share_of_the_fungus_classes() -> None:
    reading = GateReading(np.array([FUNGUS_PRIOR, 0.5, 1e-5]), np.zeros((3, 4), np.float32), np.zeros(3, np.int32),
                          np.zeros((3, 14), np.float32), np.zeros(3, bool))
    gate = RelevanceGate.__new__(RelevanceGate)
    gate.probe, gate.prior_log_odds = None, 0.0
    relevance = gate.relevance(reading)
    assert relevance[0] == pytest.approx(0.5, abs=1e-6)
    assert relevance[1] > 0.99 and relevance[2] < 0.01
    gate.prior_log_odds = 2.0  # a source that is mostly fungi: the same photo is more likely one
    assert gate.relevance(reading)[0] == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-6)
    blank = GateReading(reading.fungus_probability, reading.embedding, reading.top_class, reading.stats,
                        np.ones(3, bool))
    assert (gate.relevance(blank) == 0).all()  # a flat colour is not a photo of anything


@pytest.mark.ml
def test_noise_and_flat_images_are_not_fungi(relevance_gate: RelevanceGate) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    photos = [Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)),
              Image.new("RGB", (300, 300), (128, 128, 128)), Image.new("RGB", (300, 300), (20, 90, 30))]
    reading = relevance_gate.read_photos(photos)
    assert (relevance_gate.relevance(reading) < 0.5).all()
    assert reading.blank.tolist() == [False, True, True]  # flat colours, whatever the colour


@pytest.mark.ml
def test_real_field_photos_land_in_fungus_classes(relevance_gate: RelevanceGate, real_photos: Path) -> None:
    from PIL import Image

    rows = [json.loads(line) for line in (real_photos / "labels.jsonl").read_text().splitlines() if line.strip()]
    field = [real_photos / r["file"] for r in rows if r["label"] == "field"][:10]
    sheets = [real_photos / r["file"] for r in rows if r["label"] in ("specimen", "document")][:10]
    field_reading = relevance_gate.read_photos([Image.open(p) for p in field])
    sheet_reading = relevance_gate.read_photos([Image.open(p) for p in sheets])
    in_fungus_classes = np.isin(field_reading.top_class, FUNGUS_CLASSES).mean()
    assert in_fungus_classes >= 0.7, f"only {in_fungus_classes:.0%} of field photos have a fungus class on top"
    assert (relevance_gate.relevance(field_reading) >= 0.5).mean() >= 0.9
    assert (relevance_gate.relevance(sheet_reading) < 0.5).mean() >= 0.9
