"""apply_trainable: frozen / full / LoRA per part gives exactly the expected trainable parameters."""

from __future__ import annotations

import dataclasses

import peft
import pytest
import torch

from components.config import ParamsError, TrainableConfig
from components.models import apply_trainable, encode_batch, load_model, part_of, save_model


def _trainable(model) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"vision": set(), "projector": set(), "llm": set()}
    for name, param in model.named_parameters():
        if param.requires_grad:
            out[part_of(name)].add(name)
    return out


def _cfg(model_cfg, vision, projector, llm):
    return dataclasses.replace(model_cfg, trainable=TrainableConfig(vision=vision, projector=projector, llm=llm))


def test_part_names():
    assert part_of("model.visual.blocks.0.attn.qkv.weight") == "vision"
    assert part_of("model.visual.patch_embed.proj.weight") == "vision"
    assert part_of("model.visual.merger.mlp.0.weight") == "projector"
    assert part_of("base_model.model.model.visual.merger.ln_q.weight") == "projector"
    assert part_of("model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight") == "llm"
    assert part_of("lm_head.weight") == "llm"


def test_default_is_vision_frozen_projector_and_llm_full(tiny_base, model_cfg):
    assert model_cfg.trainable == TrainableConfig()  # smoke keeps the default: 4D-RGPT Tab. 7's best
    model, _ = load_model(tiny_base, model_cfg, for_training=True)
    all_names = {part: {n for n, _ in model.named_parameters() if part_of(n) == part} for part in ("vision", "projector", "llm")}
    trainable = _trainable(apply_trainable(model, model_cfg))
    assert trainable == {"vision": set(), "projector": all_names["projector"], "llm": all_names["llm"]}
    assert "lm_head.weight" in trainable["llm"] and "model.language_model.embed_tokens.weight" in trainable["llm"]


def test_vision_full_llm_frozen(tiny_base, model_cfg):
    model, _ = load_model(tiny_base, model_cfg)
    trainable = _trainable(apply_trainable(model, _cfg(model_cfg, "full", "frozen", "frozen")))
    assert trainable["vision"] and not trainable["projector"] and not trainable["llm"]


def test_lora_targets_attention_of_both_towers(tiny_base, model_cfg):
    model, _ = load_model(tiny_base, model_cfg)
    wrapped = apply_trainable(model, _cfg(model_cfg, "lora", "full", "lora"))
    assert isinstance(wrapped, peft.PeftModel)
    trainable = _trainable(wrapped)
    assert all("lora_" in n for n in trainable["vision"] | trainable["llm"])
    assert {n.split(".attn.")[1].split(".")[0] for n in trainable["vision"]} == {"qkv", "proj"}
    assert {n.split(".self_attn.")[1].split(".")[0] for n in trainable["llm"]} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert trainable["projector"] and not any("lora_" in n for n in trainable["projector"])  # full, not adapted
    base_trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad and "base_layer" in n]
    assert base_trainable == []


def test_lora_model_saves_merged_and_reloads(tiny_base, model_cfg, records, tmp_path):
    """save_model merges the adapters: the saved folder is a plain checkpoint with the same outputs."""
    model, processor = load_model(tiny_base, model_cfg)
    wrapped = apply_trainable(model, _cfg(model_cfg, "frozen", "full", "lora"))
    with torch.no_grad():
        for name, param in wrapped.named_parameters():
            if "lora_B" in name or "merger" in name:
                param.add_(0.05)  # stand in for training: adapters and the full projector both change
    batch = encode_batch(records[:2], processor, model_cfg, with_target=True)
    wrapped.eval()
    with torch.no_grad():
        expected = wrapped(**batch).logits
    reloaded, _ = load_model(save_model(wrapped, processor, tmp_path / "trained"), model_cfg)
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, expected, atol=1e-5)


def test_all_frozen_is_a_config_error():
    with pytest.raises(ParamsError, match="nothing would train"):
        TrainableConfig(vision="frozen", projector="frozen", llm="frozen")
