"""Each backbone preset builds its model and its fine-tuning plan opens what the preset says: the last
``unfreeze_layers`` layers with weights, a part of the backbone and never all of it, BatchNorm left frozen."""

from __future__ import annotations

import keras
import pytest

from services.trainer.model import BACKBONE_LAYER, build_model, unfreeze_for_fine_tuning
from services.trainer.presets import BACKBONE_PRESETS, PRESETS

pytestmark = [pytest.mark.unit, pytest.mark.ml]


@pytest.mark.parametrize("name", sorted(BACKBONE_PRESETS))
def test_a_preset_builds_and_fine_tunes_most_but_not_all_of_its_backbone(name: str) -> None:
    spec = PRESETS[name]("fungi", 1)
    size = spec.data.image_size
    local = spec.with_overrides({"backbone.weights": "none"})  # the same graph, no download here
    model = build_model(local, 10)
    assert model.input_shape == (None, size, size, 3) and model.output_shape == (None, 10)
    backbone = model.get_layer(BACKBONE_LAYER)
    backbone.trainable = False
    weighted = [layer for layer in backbone.layers
                if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]
    opened = unfreeze_for_fine_tuning(model, spec.fine_tune.unfreeze_layers)
    assert opened == spec.fine_tune.unfreeze_layers
    assert 0.5 * len(weighted) <= opened < len(weighted)  # "about three quarters", not the whole backbone
    assert not any(layer.trainable for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization))
