"""The relevance gate: "is this a field photo of a fungus?", one versioned answer for the curator and /predict.

Three parts, each chosen because it holds on real photos and not only on our drawn fixtures:

1. Zero-shot: an ImageNet-1k classifier's summed probability of its eight fungus classes
   (:data:`FUNGUS_CLASSES`). As a log-likelihood ratio against those classes' share of ImageNet's uniform
   class prior (8/1000), it is the Bayes decision for a photo that is a fungus or not with even prior odds,
   so no threshold is fitted to any photo set: ``log_odds = logit(p_fungus) - logit(0.008)``.
2. Image statistics (:mod:`shared.relevance.stats`): paper, strokes, straight edges... cheap cues that the
   probe may weigh; they no longer decide alone (their fixed weights were fitted to drawn images).
3. A linear probe (:mod:`shared.relevance.probe`) on the pretrained embedding and the statistics, trained
   on human labels from the review sheets, that corrects the zero-shot log-odds where labels disagree.

``relevance = sigmoid(log_odds + prior_log_odds + probe)``; ``irrelevant_score = 1 - relevance``.

A blank image (pixel standard deviation under :data:`BLANK_STD` of 255) carries no evidence at all: an
ImageNet model spreads its answer over every class, which puts the fungus share right at its prior and the
decision on a coin flip. Blank images are not photos of anything, so their relevance is 0.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.relevance.pretrained import Pretrained, load_pretrained
from shared.relevance.probe import RelevanceProbe, sigmoid
from shared.relevance.stats import image_features

logger = logging.getLogger(__name__)

# ImageNet-1k: 947 mushroom, 991 coral fungus, 992 agaric, 993 gyromitra, 994 stinkhorn, 995 earthstar,
# 996 hen-of-the-woods, 997 bolete.
FUNGUS_CLASSES = (947, 991, 992, 993, 994, 995, 996, 997)
FUNGUS_PRIOR = len(FUNGUS_CLASSES) / 1000
PRIOR_LOGIT = math.log(FUNGUS_PRIOR / (1 - FUNGUS_PRIOR))
PROBE_FEATURES = "l2-normalised pretrained embedding + image statistics (shared.relevance.stats)"
BLANK_STD = 2.0  # of 255: less variation than JPEG noise on a flat colour


@dataclass(frozen=True)
class GateReading:
    """What the pretrained model says about a batch of photos."""

    fungus_probability: np.ndarray  # (n,) summed softmax of FUNGUS_CLASSES
    embedding: np.ndarray  # (n, d) L2-normalised pooled features
    top_class: np.ndarray  # (n,) ImageNet argmax
    stats: np.ndarray  # (n, 14) image statistics
    blank: np.ndarray  # (n,) bool: no variation at all (a flat colour)

    @property
    def zero_shot_log_odds(self) -> np.ndarray:
        p = np.clip(self.fungus_probability.astype(np.float64), 1e-9, 1 - 1e-9)
        return np.log(p / (1 - p)) - PRIOR_LOGIT

    def probe_features(self) -> np.ndarray:
        return np.concatenate([self.embedding, self.stats], axis=1).astype(np.float32)


class RelevanceGate:
    """The pretrained model (a LiteRT interpreter per reading thread), plus the probe in force (None:
    zero-shot alone). ``threads``: the CPU threads one read may use."""

    def __init__(self, pretrained: Pretrained, probe: RelevanceProbe | None = None,
                 prior_log_odds: float = 0.0, threads: int = 1) -> None:
        self.pretrained = pretrained
        self.probe = probe
        self.prior_log_odds = prior_log_odds
        self.threads = threads
        self._local = threading.local()  # an interpreter is not thread-safe: one per reading thread

    def _interpreter(self) -> tuple[Any, int, int, int]:
        cached = getattr(self._local, "interpreter", None)
        if cached is None:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_content=self.pretrained.flatbuffer, num_threads=self.threads)
            interpreter.allocate_tensors()
            outputs = interpreter.get_output_details()
            logits = next(o["index"] for o in outputs if o["shape"][-1] == 1000)
            embedding = next(o["index"] for o in outputs if o["index"] != logits)
            cached = (interpreter, interpreter.get_input_details()[0]["index"], embedding, logits)
            self._local.interpreter = cached
        return cached

    @property
    def image_size(self) -> int:
        return self.pretrained.image_size

    @property
    def version(self) -> str:
        """Names the pretrained weights and the probe: a curation or an answer records which gate judged."""
        return f"{self.pretrained.name}+{self.probe.version if self.probe else 'zero-shot'}"

    def with_probe(self, probe: RelevanceProbe | None) -> RelevanceGate:
        """This gate with ``probe`` in force; a probe fitted on another pretrained model's embeddings would read
        numbers it was not fitted on, so it is refused (zero-shot until it is refitted)."""
        if probe is not None and probe.pretrained != self.pretrained.name:
            logger.warning("relevance probe %s was fitted on %s, the gate runs %s: judging zero-shot until it is "
                           "refitted", probe.version, probe.pretrained, self.pretrained.name)
            probe = None
        gate = RelevanceGate.__new__(RelevanceGate)
        gate.__dict__.update(self.__dict__)
        gate.probe = probe
        return gate

    def input_for(self, photo: Image.Image) -> np.ndarray:
        from shared.model_input import photo_to_model_input  # TensorFlow: a gate that reads has it loaded

        return photo_to_model_input(photo, self.image_size)

    def read(self, inputs: np.ndarray, stats: np.ndarray) -> GateReading:
        """``inputs``: float32 (n, size, size, 3) from :meth:`input_for`; ``stats``: (n, 14) image statistics.

        One photo per call of the interpreter: XNNPACK is no faster per image in batches on a CPU, and a fixed
        input shape needs no re-allocation."""
        interpreter, source, embedding_out, logits_out = self._interpreter()
        images = np.asarray(inputs, np.float32)
        embeddings, logits = [], []
        for image in images:
            interpreter.set_tensor(source, image[None])
            interpreter.invoke()
            embeddings.append(interpreter.get_tensor(embedding_out)[0].copy())
            logits.append(interpreter.get_tensor(logits_out)[0].astype(np.float64))
        if not len(images):
            return concatenate([])
        logit = np.stack(logits)
        probabilities = np.exp(logit - logit.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        embedding = np.stack(embeddings).astype(np.float32)
        embedding /= np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
        blank = images.std(axis=(1, 2)).max(axis=1) < BLANK_STD
        return GateReading(probabilities[:, FUNGUS_CLASSES].sum(axis=1), embedding,
                           logit.argmax(axis=1).astype(np.int32), np.asarray(stats, np.float32), blank)

    def read_photos(self, photos: list[Image.Image]) -> GateReading:
        return concatenate([self.read(self.input_for(p)[None], image_features(p)[None]) for p in photos])

    def relevance(self, reading: GateReading) -> np.ndarray:
        """P(a field photo of a fungus) per photo."""
        return relevance_of(reading, self.probe, self.prior_log_odds)

    def irrelevant_score(self, reading: GateReading) -> np.ndarray:
        return 1.0 - self.relevance(reading)


def relevance_of(reading: GateReading, probe: RelevanceProbe | None, prior_log_odds: float) -> np.ndarray:
    """P(a field photo of a fungus) of stored readings: the gate's formula, for a process that scores cached
    readings without loading the pretrained model (the curator's API)."""
    z = reading.zero_shot_log_odds + prior_log_odds
    if probe is not None:
        z = z - probe.correction(reading.probe_features())  # the probe's positive class is irrelevant
    return np.where(reading.blank, 0.0, sigmoid(z))


def concatenate(readings: list[GateReading]) -> GateReading:
    if not readings:
        return GateReading(np.zeros(0), np.zeros((0, 1280), np.float32), np.zeros(0, np.int32),
                           np.zeros((0, 14), np.float32), np.zeros(0, bool))
    return GateReading(*(np.concatenate([getattr(r, name) for r in readings]) for name in
                         ("fungus_probability", "embedding", "top_class", "stats", "blank")))


def load_gate(source: str, work_dir: str | Path, prior_log_odds: float = 0.0, threads: int = 1) -> RelevanceGate:
    """The gate with the pretrained model from ``source`` (see :mod:`shared.relevance.pretrained`)."""
    pretrained = load_pretrained(source, Path(work_dir) / "relevance")
    logger.info("relevance gate: %s", pretrained.name)
    return RelevanceGate(pretrained, None, prior_log_odds, threads)
