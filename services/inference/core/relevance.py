"""The curator's "not a field photo" filter, used when the curator's code is installed beside us."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from PIL import Image

logger = logging.getLogger(__name__)

IrrelevantScore = Callable[[Image.Image], float]


def load_irrelevant_score() -> IrrelevantScore | None:
    """``services.curator.filter.stats.irrelevant_score`` if importable; else None (the OOD score decides)."""
    try:
        module = importlib.import_module("services.curator.filter.stats")
        score: IrrelevantScore = module.irrelevant_score
    except (ImportError, AttributeError) as exc:
        logger.info("curator irrelevant filter not available (%s); relying on the OOD score", exc)
        return None
    return score
