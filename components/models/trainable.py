"""Which parts of a Qwen-VL model train: the vision tower, the projector (merger), the LLM.

4D-RGPT (Tab. 7) compares freezing / tuning each part and finds the best with the vision tower frozen
and the projector + LLM trained in full; MLLM-4D trains the LLM. Here each part is ``frozen``, ``full``
or ``lora`` from ``model.trainable`` (torchtune's ``encoder_trainable`` pattern), so any of those
settings is a params change, not a code change.

LoRA targets: the LLM's ``q_proj/k_proj/v_proj/o_proj`` and the vision blocks' fused ``qkv`` and
``proj`` (PEFT's usual ``["q_proj", "v_proj"]`` would silently hit only the LLM, docs/stack.md).
"""

from __future__ import annotations

import logging
import re

import peft
import torch

from components.config import ModelConfig

log = logging.getLogger(__name__)

PARTS = ("vision", "projector", "llm")
# Parameter names in transformers 5: model.visual.{patch_embed,blocks,merger}, model.language_model, lm_head
# (Qwen3-VL adds model.visual.deepstack_merger_list, a projector too). PEFT prefixes base_model.model.
_PROJECTOR = re.compile(r"(^|\.)visual\.(merger|deepstack_merger_list)\.")
_VISION = re.compile(r"(^|\.)visual\.")
LORA_TARGETS = {
    "vision": r".*visual\.blocks\.\d+\.attn\.(qkv|proj)",
    "llm": r".*language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
}


def part_of(name: str) -> str:
    """``"vision"``, ``"projector"`` or ``"llm"`` for a parameter name (plain or PEFT-wrapped)."""
    if _PROJECTOR.search(name):
        return "projector"
    if _VISION.search(name):
        return "vision"
    return "llm"


def parameter_counts(model: torch.nn.Module) -> dict[str, dict[str, int]]:
    """``{part: {"total": n, "trainable": n}}`` plus ``"all"``; LoRA adapters count in their part."""
    counts = {part: {"total": 0, "trainable": 0} for part in (*PARTS, "all")}
    for name, param in model.named_parameters():
        for key in (part_of(name), "all"):
            counts[key]["total"] += param.numel()
            counts[key]["trainable"] += param.numel() if param.requires_grad else 0
    return counts


def apply_trainable(model: torch.nn.Module, cfg: ModelConfig) -> torch.nn.Module:
    """Freeze / fully train / LoRA-wrap each part per ``cfg.trainable``; returns the model to train.

    With any ``lora`` part the result is a ``peft.PeftModel``. Parts set to ``full`` next to LoRA stay
    trainable inside it; save with ``save_model`` (it merges the adapters), because
    ``PeftModel.save_pretrained`` alone would drop the fully trained parts.
    """
    modes = {"vision": cfg.trainable.vision, "projector": cfg.trainable.projector, "llm": cfg.trainable.llm}
    lora_parts = [part for part, mode in modes.items() if mode == "lora"]
    if lora_parts:
        if isinstance(model, peft.PeftModel):
            raise ValueError("apply_trainable got a model that already has LoRA adapters; pass the base model")
        lora = peft.LoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules="|".join(f"(?:{LORA_TARGETS[part]})" for part in lora_parts),
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = peft.get_peft_model(model, lora)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.requires_grad_(True)
        else:
            param.requires_grad_(modes[part_of(name)] == "full")
    counts = parameter_counts(model)
    for part in PARTS:
        log.info("%-9s %-6s trainable %10d of %10d parameters", part, modes[part], counts[part]["trainable"],
                 counts[part]["total"])
    if counts["all"]["trainable"] == 0:
        raise ValueError("apply_trainable left no trainable parameter; check model.trainable")
    return model


def scale_part_learning_rates(optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                              scales: dict[str, float]) -> torch.optim.Optimizer:
    """Split each param group of a fresh ``optimizer`` by part, the group's lr times that part's scale.

    Done before the first step and before the scheduler is built, so schedulers (which scale every group's
    initial lr) keep the ratio and the optimizer state (empty) loses nothing. A no-op when every scale is 1.
    """
    if all(scales.get(part, 1.0) == 1.0 for part in PARTS):
        return optimizer
    if any(optimizer.state.values()):
        raise RuntimeError("scale_part_learning_rates needs a fresh optimizer (it already has state)")
    names = {id(p): n for n, p in model.named_parameters()}
    groups = []
    for group in optimizer.param_groups:
        by_part: dict[str, list] = {}
        for p in group["params"]:
            by_part.setdefault(part_of(names.get(id(p), "")), []).append(p)
        groups += [{**group, "params": params, "lr": group["lr"] * scales.get(part, 1.0)}
                   for part, params in by_part.items()]
    optimizer.param_groups.clear()
    for group in groups:
        optimizer.add_param_group(group)
    log.info("learning rate per part: %s", ", ".join(f"{p} x{scales.get(p, 1.0):g}" for p in PARTS))
    return optimizer
