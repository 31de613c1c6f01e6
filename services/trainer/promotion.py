"""Auto-promotion: a new model replaces the promoted one only if it is better on the same test split."""

from __future__ import annotations

import logging

from shared.registry import ModelCard, ModelRegistry, PromotionRefused

logger = logging.getLogger(__name__)


def maybe_auto_promote(registry: ModelRegistry, card: ModelCard) -> bool:
    """Promote ``card`` if nothing is promoted, or it beats the promoted model's test top-1 on the same split."""
    pointer = registry.promoted()
    if pointer is not None:
        current = registry.card(pointer.model_id)
        if current.test_split_hash != card.test_split_hash:
            logger.info("not auto-promoting %s: the promoted model was tested on another split", card.model_id)
            return False
        if card.metrics.get("top1", 0.0) <= current.metrics.get("top1", 0.0):
            logger.info("not auto-promoting %s: top1 %.3f does not beat %s (%.3f)", card.model_id,
                        card.metrics.get("top1", 0.0), current.model_id, current.metrics.get("top1", 0.0))
            return False
    try:
        registry.promote(card.model_id, by="auto-promote")
    except PromotionRefused as exc:
        logger.warning("auto-promotion of %s refused: %s", card.model_id, exc)
        return False
    logger.info("auto-promoted %s", card.model_id)
    return True
