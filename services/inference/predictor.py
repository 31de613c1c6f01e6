"""One prediction, end to end: decode off the event loop, batch, answer, optionally explain."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.inference.answers import PhotoReading, build_answer, observation_answer
from services.inference.batcher import DynamicBatcher, Scored, fit
from services.inference.core.config import InferenceSettings
from services.inference.fetch import fetch_photo
from services.inference.heatmap import overlay_png
from services.inference.images import ImageRejected, decode_for_model
from services.inference.metrics import InferenceMetrics
from services.inference.model import ServedModel
from services.inference.relevance import GateHolder
from services.inference.schemas import ObservationPrediction, Prediction
from services.inference.watcher import ModelWatcher
from shared.relevance.stats import FEATURE_NAMES, image_features

logger = logging.getLogger(__name__)

NO_MODEL = "no model is promoted yet: promote a trained model (POST /models/{id}/promote on the trainer)"


class ModelUnavailable(RuntimeError):
    pass


class PhotoRejected(ImageRejected):
    """One photo of an observation refused: the detail names it, so a person knows which part to fix."""

    def __init__(self, index: int, filename: str | None, rejected: ImageRejected) -> None:
        named = f"photo {index}" + (f" ({filename!r})" if filename else "")
        super().__init__(rejected.status_code, f"{named}: {rejected.detail}")


@dataclass(frozen=True)
class Judged:
    """The relevance gate's judgement of one photo."""

    relevance: float
    blank: bool
    gate_version: str


class Predictor:
    def __init__(self, settings: InferenceSettings, watcher: ModelWatcher, batcher: DynamicBatcher,
                 session: Any, gate: GateHolder | None, metrics: InferenceMetrics) -> None:
        self.settings = settings
        self.watcher = watcher
        self.batcher = batcher
        self.session = session
        self.gate = gate
        self.metrics = metrics

    def model(self) -> ServedModel:
        model = self.watcher.current
        if model is None:
            raise ModelUnavailable(NO_MODEL)
        return model

    def _decode(self, data: bytes, image_size: int) -> tuple[np.ndarray, Judged | None]:
        """Model input of one upload, and the relevance gate's judgement of it, in a decoding thread: the gate
        reads photos one at a time (shared/relevance/gate.py), so it runs beside the batched model on the other
        cores instead of after it on the model's thread."""
        image, photo = decode_for_model(data, image_size, self.settings.max_pixels, self.settings.max_upload_bytes)
        if self.gate is None:
            return image, None
        gate = self.gate.current
        gate_image = image if gate.image_size == image_size else gate.input_for(photo)
        # The statistics are features of the probe only: a zero-shot gate does not need them.
        stats = image_features(photo) if gate.probe is not None else np.zeros(len(FEATURE_NAMES), np.float32)
        reading = gate.read(gate_image[None], stats[None])
        return image, Judged(float(gate.relevance(reading)[0]), bool(reading.blank[0]), gate.version)

    def uncertain_below(self, model: ServedModel) -> float:
        if self.settings.uncertain_below is not None:
            return self.settings.uncertain_below
        return model.card.openset.uncertain_below if model.card.openset else 0.5

    async def _read(self, data: bytes) -> tuple[np.ndarray, Judged | None, Scored]:
        """Decode (off the event loop), judge relevance, and score one photo in a shared batch."""
        image_size = self.model().image_size
        loop = asyncio.get_running_loop()
        self.batcher.arriving += 1
        try:
            image, judged = await loop.run_in_executor(None, self._decode, data, image_size)
        finally:
            self.batcher.arriving -= 1
        return image, judged, await self.batcher.score(image)

    async def predict_bytes(self, data: bytes, explain: bool = False, top_k: int | None = None) -> Prediction:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        image, judged, scored = await self._read(data)
        model = scored.model
        answer = build_answer(
            scored.probabilities, model.card.classes, model.model_id, top_k or self.settings.top_k,
            self.uncertain_below(model), self.settings.irrelevant_above,
            judged.relevance if judged else None, scored.novelty, judged.gate_version if judged else None,
            judged.blank if judged else False,
        )
        if explain and answer.predictions:
            top = int(np.argmax(scored.probabilities))
            answer.heatmap_png = await loop.run_in_executor(None, self._explain, model, image, top)
        answer.elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        self.metrics.predictions.labels(answer.verdict.value).inc()
        return answer

    async def predict_observation(self, photos: list[tuple[str | None, bytes]], top_k: int | None = None
                                  ) -> ObservationPrediction:
        """One answer for several photos of one mushroom; a photo that cannot be read fails the whole request
        (:class:`PhotoRejected` names it): an answer silently missing a photo would look like one of them all."""
        started = time.perf_counter()

        async def read(index: int, filename: str | None, data: bytes) -> tuple[Judged | None, Scored]:
            try:
                _, judged, scored = await self._read(data)
            except ImageRejected as exc:
                raise PhotoRejected(index, filename, exc) from None
            return judged, scored

        for _ in range(2):  # a hot swap between photos: read them all again with one model
            results = await asyncio.gather(*(read(i, name, data) for i, (name, data) in enumerate(photos)))
            models = {id(scored.model) for _, scored in results}
            if len(models) == 1:
                break
        else:
            raise ModelUnavailable("the model changed while the photos were read: send them again")
        model = results[0][1].model
        readings = [
            PhotoReading(scored.logits, scored.novelty, judged.relevance if judged else None,
                         judged.blank if judged else False, judged.gate_version if judged else None, filename)
            for (filename, _), (judged, scored) in zip(photos, results, strict=True)
        ]
        answer = observation_answer(readings, model.card.classes, model.model_id, top_k or self.settings.top_k,
                                    self.uncertain_below(model), self.settings.irrelevant_above, model.temperature)
        answer.elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        self.metrics.predictions.labels(answer.verdict.value).inc()
        return answer

    @staticmethod
    def _explain(model: ServedModel, image: np.ndarray, class_index: int) -> str | None:
        fitted = fit(image, model.image_size)
        try:
            cam = model.explain(fitted, class_index)
        except Exception:  # noqa: BLE001 - a model Grad-CAM cannot handle still answers, without a map
            logger.exception("Grad-CAM failed for model %s", model.model_id)
            return None
        return overlay_png(fitted, cam)

    async def predict_url(self, url: str, explain: bool = False, top_k: int | None = None) -> Prediction:
        self.model()  # 503 before any network traffic
        started = time.perf_counter()
        data = await fetch_photo(self.session, url, self.settings.max_upload_bytes, self.settings.url_max_redirects,
                                 self.settings.allow_loopback_urls)
        answer = await self.predict_bytes(data, explain, top_k)
        answer.elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        return answer
