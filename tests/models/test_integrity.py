"""Loading refuses weights that are wrong, partial, corrupt or changed since they were written, naming the
folder and the first bad file or tensor; every folder the pipeline writes carries a digest."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from components.io import check_folder_digest
from components.models import load_model, save_model
from components.models.factory import DIGEST, ModelIntegrityError, model_digest


def _external_copy(base: Path, tmp_path: Path) -> Path:
    """A copy of the base model without its digest, as an external checkpoint arrives: the weight checks
    below are the only line of defence there."""
    folder = tmp_path / "external"
    shutil.copytree(base, folder)
    (folder / DIGEST).unlink()
    return folder


def _rewrite_weights(folder: Path, change) -> None:
    weights = load_file(str(folder / "model.safetensors"))
    save_file(change(weights), str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_load_refuses_wrong_architecture_weights(tiny_base, model_cfg, tmp_path):
    """A Qwen2.5-VL config beside GPT-2 weights: transformers fills every tensor randomly and only warns."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = _external_copy(tiny_base, tmp_path)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=1, n_head=2, vocab_size=512, n_positions=64,
                                      bos_token_id=0, eos_token_id=0))
    weights = {k: v.detach().clone().contiguous() for k, v in gpt2.state_dict().items() if k != "lm_head.weight"}
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelIntegrityError, match=rf"{folder}: .*missing .*unexpected .*transformer\."):
        load_model(folder, model_cfg)


def test_load_refuses_a_missing_tensor(tiny_base, model_cfg, tmp_path):
    folder = _external_copy(tiny_base, tmp_path)
    _rewrite_weights(folder, lambda w: {k: v for k, v in w.items() if k != "model.norm.weight"})
    with pytest.raises(ModelIntegrityError, match=rf"{folder}: .*missing 1 \(first: model\.language_model\.norm\.weight\)"):
        load_model(folder, model_cfg)


def test_load_refuses_nan_weights(tiny_base, model_cfg, tmp_path):
    folder = _external_copy(tiny_base, tmp_path)

    def poison(weights):
        weights["model.layers.0.mlp.up_proj.weight"].view(-1)[3] = float("nan")
        return weights

    _rewrite_weights(folder, poison)
    with pytest.raises(ModelIntegrityError, match=rf"{folder}: tensor model\.language_model\.layers\.0\.mlp\.up_proj\.weight .*NaN"):
        load_model(folder, model_cfg)


def test_load_names_the_truncated_safetensors_file(tiny_base, model_cfg, tmp_path):
    folder = _external_copy(tiny_base, tmp_path)
    weights = folder / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    with pytest.raises(ModelIntegrityError, match=rf"{weights}: not a whole safetensors file"):
        load_model(folder, model_cfg)


def test_load_refuses_a_digest_mismatch(tiny_base, model_cfg, tmp_path):
    """Finite weights of the right names and shapes, but not the ones the stage wrote."""
    model, processor = load_model(tiny_base, model_cfg)
    folder = save_model(model, processor, tmp_path / "saved")
    assert check_folder_digest(folder, DIGEST) == model_digest(folder)

    def nudge(weights):
        weights["lm_head.weight"].add_(1e-3)
        return weights

    _rewrite_weights(folder, nudge)
    with pytest.raises(ModelIntegrityError, match=rf"{folder}/model\.safetensors does not match .*{DIGEST}"):
        load_model(folder, model_cfg)


def test_load_insists_on_a_digest_where_a_stage_wrote_the_folder(tiny_base, model_cfg, tmp_path):
    folder = _external_copy(tiny_base, tmp_path)
    load_model(folder, model_cfg)  # an external checkpoint: no digest to check
    with pytest.raises(ModelIntegrityError, match=rf"{folder} has no {DIGEST}"):
        load_model(folder, model_cfg, require_digest=True)


def test_load_refuses_a_declared_architecture_it_does_not_build(tiny_base, model_cfg, tmp_path):
    folder = _external_copy(tiny_base, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["Qwen2ForCausalLM"]}))
    with pytest.raises(ModelIntegrityError, match=rf"{folder}: config.json declares \['Qwen2ForCausalLM'\]"):
        load_model(folder, model_cfg)


def test_saved_folders_carry_a_digest(tiny_base, model_cfg, tmp_path):
    assert check_folder_digest(tiny_base, DIGEST) == model_digest(tiny_base)  # build_base_model
    model, processor = load_model(tiny_base, model_cfg)
    saved = save_model(model, processor, tmp_path / "saved")
    files = json.loads((saved / DIGEST).read_text())["files"]
    assert "model.safetensors" in files and "config.json" in files
    assert model_digest(saved) and model_digest(saved) != model_digest(tiny_base)
    load_model(saved, model_cfg, require_digest=True)
    assert torch.equal(load_file(str(saved / "model.safetensors"))["lm_head.weight"],
                       load_file(str(tiny_base / "model.safetensors"))["lm_head.weight"])
