"""A stand-in for the relevance gate in tests of plumbing (hashes, broken files, cache rows): no TensorFlow.

It judges nothing on purpose: tests of judgements load the real gate (``test_relevance_real.py``, marked ml).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from shared.relevance.gate import GateReading


class PlumbingGate:
    """Duck-types the parts of RelevanceGate the analysis calls; every photo gets fungus probability 0.5."""

    pretrained = SimpleNamespace(name="plumbing-gate")
    prior_log_odds = 0.0
    probe = None
    version = "plumbing-gate+zero-shot"

    def input_for(self, photo: Image.Image) -> np.ndarray:
        return np.asarray(photo.convert("RGB").resize((8, 8)), np.float32)

    def read(self, inputs: np.ndarray, stats: np.ndarray) -> GateReading:
        n = len(inputs)
        embedding = np.zeros((n, 1280), np.float32)
        embedding[:, 0] = 1.0
        return GateReading(np.full(n, 0.5), embedding, np.zeros(n, np.int32), np.asarray(stats, np.float32),
                           np.asarray(inputs, np.float32).reshape(n, -1).std(axis=1) < 1.0)


@pytest.fixture
def plumbing_gate() -> PlumbingGate:
    return PlumbingGate()
