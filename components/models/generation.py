"""Batched greedy generation for evaluation and the training gates (the ``GenerateFn`` of the harness).

Left padding (set by ``load_model`` for inference) lets one ``generate`` call continue every row of a
batch from its last prompt token. ``blind=True`` blanks the frames (same count and size, all black):
the blind baseline that tells whether a model reads the video or only the question.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from components.config import ModelConfig
from components.models.inputs import encode_batch


@torch.no_grad()
def generate_texts(model, processor, cfg: ModelConfig, records: list[dict], *, max_new_tokens: int,
                   blind: bool = False, temperature: float | None = None) -> list[str]:
    """One batched ``generate`` over ``records`` (left-padded prompts): greedy, or sampled at ``temperature``."""
    tokenizer = processor.tokenizer
    inputs = encode_batch(records, processor, cfg, with_target=False, blank_frames=blind)
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    sample = temperature is not None
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=sample,
                         **({"temperature": temperature, "top_p": None, "top_k": None} if sample else {}),
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    return tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def make_generate_fn(model, processor, cfg: ModelConfig, *, max_new_tokens: int) -> Callable[[list[dict], bool], list[str]]:
    processor.tokenizer.padding_side = "left"
    model.eval()

    def generate(records: list[dict], blind: bool) -> list[str]:
        return generate_texts(model, processor, cfg, records, max_new_tokens=max_new_tokens, blind=blind)

    return generate
