"""The visual input reaches the loss: gradients flow into the projector (and the vision tower when it
trains), and changing the pixels changes the loss, for frames as images and as one video."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from components.config import TrainableConfig
from components.models import apply_trainable, encode_batch, load_model


def _grad_norms(model) -> dict[str, float]:
    norms = {"vision": 0.0, "projector": 0.0}
    for name, param in model.named_parameters():
        if param.grad is None:
            continue
        part = "projector" if ".merger." in name else "vision" if ".visual." in name else None
        if part:
            norms[part] += float(param.grad.norm())
    return norms


@pytest.mark.parametrize("visual_input", ["images", "video"])
@pytest.mark.parametrize("vision", ["frozen", "full", "lora"])
def test_gradients_reach_projector_and_trainable_vision(tiny_base, model_cfg, records, visual_input, vision):
    cfg = dataclasses.replace(model_cfg, visual_input=visual_input, trainable=TrainableConfig(vision=vision),
                              time_cue="tpe" if visual_input == "images" else "prompt")
    model, processor = load_model(tiny_base, cfg, for_training=True)
    model = apply_trainable(model, cfg)
    batch = encode_batch(records, processor, cfg, with_target=True)
    loss = model(**batch).loss
    loss.backward()
    norms = _grad_norms(model)
    assert torch.isfinite(loss) and norms["projector"] > 0
    assert (norms["vision"] > 0) == (vision != "frozen")


@pytest.mark.parametrize("visual_input", ["images", "video"])
def test_changing_the_pixels_changes_the_loss(tiny_base, model_cfg, records, visual_input):
    cfg = dataclasses.replace(model_cfg, visual_input=visual_input, time_cue="tpe" if visual_input == "images" else "prompt")
    model, processor = load_model(tiny_base, cfg)
    batch = encode_batch(records, processor, cfg, with_target=True)
    key = "pixel_values" if visual_input == "images" else "pixel_values_videos"
    with torch.no_grad():
        loss = model(**batch).loss
        blank = model(**{**batch, key: torch.zeros_like(batch[key])}).loss
        again = model(**batch).loss
    assert loss == again and abs(float(loss - blank)) > 1e-6
