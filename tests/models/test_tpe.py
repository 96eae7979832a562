"""Timestamp Positional Encoding (4D-RGPT eq. 5) and the other time cues of Tab. 6."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from components.config import ParamsError
from components.models import encode_batch, load_model
from components.models.factory import save_model
from components.models.inputs import build_conversation, frames_for
from components.models.tpe import TIME_KEY, stamp, timestamp_encoding


def test_encoding_matches_equation_5_on_literals():
    p = timestamp_encoding(torch.tensor([0.0, 1.5]), dim=4, max_timescale=100.0)
    # i = 0: t / 100^0 = t; i = 1: t / 100^(2/4) = t / 10
    expected = torch.tensor([[0.0, 1.0, 0.0, 1.0],
                             [math.sin(1.5), math.cos(1.5), math.sin(0.15), math.cos(0.15)]])
    assert torch.allclose(p, expected, atol=1e-6)
    with pytest.raises(ValueError, match="even"):
        timestamp_encoding(torch.tensor([1.0]), dim=3, max_timescale=100.0)


def test_stamp_copies_and_never_mutates_the_cached_frame():
    frame = Image.new("RGB", (8, 8))
    stamped = stamp(frame, 0.75)
    assert stamped.info[TIME_KEY] == 0.75 and TIME_KEY not in frame.info


def test_frames_carry_record_timestamps(records, model_cfg):
    record = records[0]
    times = [f.info[TIME_KEY] for f in frames_for(record, model_cfg)]
    assert times[0] == 0.0 and times == sorted(times) and times[-1] == pytest.approx(
        record["timestamps"][-1] - record["timestamps"][0])


def test_timestamps_reach_the_loss_and_survive_save_and_load(tiny_base, model_cfg, records, tmp_path):
    model, processor = load_model(tiny_base, model_cfg)
    batch = encode_batch(records, processor, model_cfg, with_target=True)
    width = 3 * model_cfg.tiny.temporal_patch_size * model_cfg.tiny.patch_size**2
    assert batch["pixel_values"].shape[1] == width + 1  # patch rows + their frame's timestamp
    shifted = batch["pixel_values"].clone()
    shifted[:, -1] += 1.0
    with torch.no_grad():
        loss = model(**batch).loss
        later = model(**{**batch, "pixel_values": shifted}).loss
    assert abs(float(loss - later)) > 1e-6
    # a vanilla processor's pixels (no timestamp column) are refused, not silently mis-read
    with pytest.raises(ValueError, match="TPE"):
        model(**{**batch, "pixel_values": batch["pixel_values"][:, :-1]})
    # the saved processor is the ordinary Qwen one; loading re-enables the timestamps
    save_model(model, processor, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "processor_config.json").read_text())["image_processor"]
    assert not saved["image_processor_type"].startswith("Timestamped")
    again, processor2 = load_model(tmp_path / "m", model_cfg)
    with torch.no_grad():
        assert torch.allclose(again(**encode_batch(records, processor2, model_cfg, with_target=True)).loss, loss)


def test_unstamped_images_are_a_clear_error(tiny_base, model_cfg, records):
    _, processor = load_model(tiny_base, model_cfg)
    plain = dataclasses.replace(model_cfg, time_cue="none")
    texts = [processor.apply_chat_template(build_conversation(records[0], plain, with_target=False), tokenize=False)]
    with pytest.raises(ValueError, match="carry no timestamp"):
        processor(text=texts, images=[frames_for(records[0], plain)], return_tensors="pt")


def test_time_cues_change_only_their_own_channel(records, model_cfg):
    record = records[0]
    none, marks, prompt = (dataclasses.replace(model_cfg, time_cue=c) for c in ("none", "marks", "prompt"))
    text = {c.time_cue: build_conversation(record, c, with_target=False)[0]["content"][-1]["text"]
            for c in (none, marks, prompt)}
    assert text["none"] == text["marks"] and "frames per second" in text["prompt"]
    assert "seconds" not in text["none"].split("\n")[0]
    plain, burned = frames_for(record, none), frames_for(record, marks)
    diff = [np.abs(np.asarray(a, int) - np.asarray(b, int)) for a, b in zip(plain, burned, strict=True)]
    assert all(d.sum() > 0 for d in diff)
    assert all(d[model_cfg.frame_size // 2:, :].sum() == 0 for d in diff)  # only the top-left corner


def test_tpe_needs_frames_as_images(model_cfg):
    with pytest.raises(ParamsError, match="tpe"):
        dataclasses.replace(model_cfg, visual_input="video", time_cue="tpe")


def test_tpe_scale_multiplies_what_reaches_the_merger(tiny_base, model_cfg, records):
    """``model.tpe_scale``: the merger's input is the untimed features plus exactly scale x p(t)."""
    seen = {}
    for scale in (None, 1.0, 0.25):  # None: no time cue, the features as the vision tower makes them
        cfg = dataclasses.replace(model_cfg, time_cue="none") if scale is None else \
            dataclasses.replace(model_cfg, tpe_scale=scale)
        model, processor = load_model(tiny_base, cfg)
        model.model.visual.merger.register_forward_pre_hook(lambda m, args, s=scale: seen.__setitem__(s, args[0]))
        with torch.no_grad():
            model(**encode_batch(records[:1], processor, cfg, with_target=True))
    times = torch.tensor([f.info[TIME_KEY] for f in frames_for(records[0], model_cfg)])
    per_patch = seen[None].shape[0] // len(times)  # patches of one frame, in frame order
    p = timestamp_encoding(times.repeat_interleave(per_patch), seen[None].shape[1], model_cfg.tpe_max_timescale)
    assert p.norm(dim=-1).min() > 1.0
    assert torch.allclose(seen[1.0] - seen[None], p, atol=1e-5)
    assert torch.allclose(seen[0.25] - seen[None], 0.25 * p, atol=1e-5)
    with pytest.raises(ParamsError, match="tpe_scale"):
        dataclasses.replace(model_cfg, tpe_scale=0.0)
