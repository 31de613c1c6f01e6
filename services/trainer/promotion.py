"""Auto-promotion: a new model replaces the promoted one only if it is better on validation, on the same split.

The choice reads validation figures only: a model chosen on its test score has seen the test split, and its
test figures would no longer be an unbiased estimate (the test split is only read to report). The split hash
still guards comparability: two models are compared only when they were split the same way.
"""

from __future__ import annotations

import logging

from shared.registry import ModelCard, ModelRegistry, PromotionRefused

logger = logging.getLogger(__name__)

# newest first: val_top1 (top-1 of the kept weights on validation); older cards have only best_val_accuracy
VALIDATION_METRICS = ("val_top1", "best_val_accuracy")


def validation_score(card: ModelCard) -> float | None:
    """The card's validation top-1, or None when it has none (it cannot be compared fairly)."""
    for name in VALIDATION_METRICS:
        if name in card.metrics:
            return card.metrics[name]
    return None


def maybe_auto_promote(registry: ModelRegistry, card: ModelCard) -> bool:
    """Promote ``card`` if nothing is promoted, or it beats the promoted model's validation top-1 on the same
    split. A promoted model without a validation figure stays (a person chose it; nothing fair to compare)."""
    pointer = registry.promoted()
    if pointer is not None:
        current = registry.card(pointer.model_id)
        if current.test_split_hash != card.test_split_hash:
            logger.info("not auto-promoting %s: the promoted model was split differently", card.model_id)
            return False
        new, old = validation_score(card), validation_score(current)
        if new is None or old is None:
            logger.info("not auto-promoting %s: no validation figure to compare with %s", card.model_id,
                        current.model_id)
            return False
        if new <= old:
            logger.info("not auto-promoting %s: validation top-1 %.3f does not beat %s (%.3f)", card.model_id, new,
                        current.model_id, old)
            return False
    try:
        registry.promote(card.model_id, by="auto-promote")
    except PromotionRefused as exc:
        logger.warning("auto-promotion of %s refused: %s", card.model_id, exc)
        return False
    logger.info("auto-promoted %s", card.model_id)
    return True
