"""Where the relevance probe lives: one JSON object in the bucket, read by the curator and /predict alike."""

from __future__ import annotations

from shared.relevance.probe import RelevanceProbe
from shared.storage import ObjectNotFound, ObjectStore

PROBE_KEY = "curation/relevance/probe.json"


def save_probe(store: ObjectStore, probe: RelevanceProbe) -> None:
    store.put_json(PROBE_KEY, probe.model_dump(mode="json"))


def load_probe(store: ObjectStore) -> RelevanceProbe | None:
    try:
        return RelevanceProbe.model_validate(store.get_json(PROBE_KEY))
    except ObjectNotFound:
        return None
