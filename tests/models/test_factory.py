"""build_base_model -> load_model: round trip, determinism, lineage, real-checkpoint path, load errors."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch

from components.models import (
    ModelNotAvailableError,
    build_base_model,
    encode_batch,
    factory,
    load_model,
    save_model,
    tokenizer_corpus,
)


def _logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def test_meta_json_describes_the_build(tiny_base, model_cfg):
    meta = json.loads((tiny_base / "meta.json").read_text())
    model, processor = load_model(tiny_base, model_cfg)
    assert meta["parameters"]["all"] == sum(p.numel() for p in model.parameters())
    assert sum(meta["parameters"][p] for p in ("vision", "projector", "llm")) == meta["parameters"]["all"]
    assert meta["seed"] == model_cfg.seed and meta["config"]["tiny"]["hidden_size"] == model_cfg.tiny.hidden_size
    assert len(meta["texts"]["sha256"]) == 64 and meta["texts"]["count"] > 0
    assert meta["vocab_size"] == len(processor.tokenizer) == model.config.text_config.vocab_size
    assert "git_commit" not in meta  # a DVC output holds nothing run-specific (the commit is in MLflow)
    assert not [p for p in tiny_base.parent.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    assert {p.suffix for p in tiny_base.iterdir()} >= {".safetensors"} and not list(tiny_base.glob("*.bin"))


def test_save_and_reload_gives_the_same_logits(tiny_base, model_cfg, records, tmp_path):
    model, processor = load_model(tiny_base, model_cfg)
    batch = encode_batch(records[:2], processor, model_cfg, with_target=True)
    before = _logits(model, batch)
    again, _ = load_model(save_model(model, processor, tmp_path / "copy"), model_cfg)
    assert torch.equal(before, _logits(again, batch))
    # the saved processor keeps the frame bounds: 56 px frames stay 56 px (4 x 4 patches)
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]] * (2 * model_cfg.num_frames)


def test_build_is_deterministic_for_a_seed(tiny_base, model_cfg, curated_records, tmp_path):
    texts = tokenizer_corpus([r for r in curated_records if r["split"] != "bench"], model_cfg)
    again = build_base_model(model_cfg, texts, tmp_path / "again")
    other = build_base_model(dataclasses.replace(model_cfg, seed=1), texts, tmp_path / "other")
    a, b, c = (load_model(p, model_cfg)[0].state_dict() for p in (tiny_base, again, other))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert (tiny_base / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()


def test_a_real_checkpoint_is_pointed_at_not_copied(tiny_base, model_cfg, tmp_path):
    cfg = dataclasses.replace(model_cfg, source=str(tiny_base))  # any local Qwen2.5-VL folder
    out = build_base_model(cfg, [], tmp_path / "base")
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["meta.json"]
    assert meta["model_path"] == str(tiny_base.resolve()) and meta["model_type"] == "qwen2_5_vl"
    assert meta["parameters"] == json.loads((tiny_base / "meta.json").read_text())["parameters"]
    model, _ = load_model(out, model_cfg)  # downstream code loads the base-model folder either way
    assert sum(p.numel() for p in model.parameters()) == meta["parameters"]["all"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback only applies without CUDA")
def test_cpu_falls_back_to_float32_sdpa(tiny_base, model_cfg, caplog):
    cfg = dataclasses.replace(model_cfg, dtype="bfloat16", attn_implementation="flash_attention_2")
    with caplog.at_level(logging.WARNING, logger="components.models.factory"):
        model, processor = load_model(tiny_base, cfg, for_training=True)
    assert model.dtype == torch.float32 and model.config._attn_implementation == "sdpa"
    assert "float32" in caplog.text and model.training and processor.tokenizer.padding_side == "right"


@pytest.fixture
def no_weight_loading(monkeypatch):
    """Every error must come before a weight is read: loading weights fails the test."""

    def boom(*args, **kwargs):
        raise AssertionError("weights were loaded before the source was checked")

    monkeypatch.setattr(factory.AutoModelForImageTextToText, "from_pretrained", boom)
    monkeypatch.setattr(factory.AutoProcessor, "from_pretrained", boom)


def test_missing_folder_is_named(model_cfg, tmp_path, no_weight_loading):
    with pytest.raises(FileNotFoundError, match="model folder not found: .*nowhere/base"):
        load_model(tmp_path / "nowhere" / "base", model_cfg)


def test_tiny_is_built_not_loaded(model_cfg, no_weight_loading):
    with pytest.raises(ValueError, match="build_base_model"):
        load_model("tiny", model_cfg)


def test_wrong_model_type_is_named(model_cfg, tmp_path, no_weight_loading):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="'bert'.*Qwen2.5-VL or Qwen3-VL"):
        load_model(tmp_path, model_cfg)


def test_pickled_weights_are_refused(model_cfg, tmp_path, no_weight_loading):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="safetensors"):
        load_model(tmp_path, model_cfg)


def test_hub_name_not_on_disk_says_how_to_predownload(model_cfg, no_weight_loading):
    with pytest.raises(ModelNotAvailableError, match=r"cannot download.*hf download mllm4d-test/no-such-model.*HF_HOME"):
        load_model("mllm4d-test/no-such-model", model_cfg)


def test_non_tiny_build_checks_the_source_first(model_cfg, tmp_path, no_weight_loading):
    cfg = dataclasses.replace(model_cfg, source="mllm4d-test/no-such-model")
    with pytest.raises(ModelNotAvailableError):
        build_base_model(cfg, [], tmp_path / "base")
    assert not (tmp_path / "base").exists()


@pytest.mark.parametrize("visual_input", ["images", "video"])
def test_batched_generation_matches_one_by_one(tiny_base, model_cfg, records, visual_input):
    """Left padding and M-RoPE positions are right: a padded batch generates what each row alone does."""
    cfg = dataclasses.replace(model_cfg, visual_input=visual_input, time_cue="tpe" if visual_input == "images" else "prompt")
    model, processor = load_model(tiny_base, cfg)

    def generate(rows):
        batch = encode_batch(rows, processor, cfg, with_target=False)
        out = model.generate(**batch, max_new_tokens=6, do_sample=False)
        return processor.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)

    assert generate(records[:3]) == [generate([r])[0] for r in records[:3]]
