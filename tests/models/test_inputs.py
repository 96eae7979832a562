"""Records -> frames, conversations, model inputs; labels cover exactly the assistant turn."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from components.curation.cot import parse_cot
from components.models import (
    IGNORE_INDEX,
    answer_for,
    build_conversation,
    encode_batch,
    frames_for,
    load_model,
    target_text,
)
from components.models.inputs import FRAME_IMAGES, SOM_FRAME, frame_indices
from components.models.tpe import TIME_KEY


@pytest.fixture(scope="module")
def processor(tiny_base, model_cfg):
    return load_model(tiny_base, model_cfg)[1]


def test_frame_indices_keep_first_and_last():
    assert frame_indices(8, 4) == [0, 2, 5, 7]
    assert frame_indices(4, 2) == [0, 3]
    assert frame_indices(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="num_frames=5.*4 frames"):
        frame_indices(4, 5)


def test_frames_are_resized_and_som_replaces_the_first(records, model_cfg):
    plain, region = records[0], records[1]
    cfg = dataclasses.replace(model_cfg, num_frames=3)
    frames = frames_for(plain, cfg)
    assert len(frames) == 3 and all(f.size == (cfg.frame_size, cfg.frame_size) and f.mode == "RGB" for f in frames)
    last = Image.open(plain["frame_paths"][-1]).convert("RGB").resize(frames[-1].size, Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(frames[-1]), np.asarray(last))
    som = Image.open(region["som_image"]).convert("RGB").resize(frames[0].size, Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(frames_for(region, cfg)[0]), np.asarray(som))


@pytest.mark.parametrize("time_cue", ["tpe", "marks"])
def test_frames_in_memory_match_the_files(records, model_cfg, time_cue):
    """The served model decodes the request's image bytes: the frames it builds are evaluation's, pixel for
    pixel, with the same timestamps (the Set-of-Marks image first for the region-prompted record)."""
    cfg = dataclasses.replace(model_cfg, time_cue=time_cue)
    for record in records[:2]:  # plain, then region-prompted
        decoded = {**record, "frame_paths": [], "som_image": None,  # nothing left to read from disk
                   FRAME_IMAGES: [Image.open(io.BytesIO(Path(p).read_bytes())) for p in record["frame_paths"]],
                   SOM_FRAME: Image.open(record["som_image"]) if record["som_image"] else None}
        got, want = frames_for(decoded, cfg), frames_for(record, cfg)
        assert len(got) == len(want) == cfg.num_frames
        for g, w in zip(got, want, strict=True):
            assert g.size == w.size and np.array_equal(np.asarray(g), np.asarray(w))
            assert g.info.get(TIME_KEY) == w.info.get(TIME_KEY)


def test_conversation_shape_and_answer_formats(records, model_cfg):
    mc = records[0]
    user, assistant = build_conversation(mc, model_cfg, with_target=True)
    assert [item["type"] for item in user["content"]] == ["image"] * model_cfg.num_frames + ["text"]
    prompt = user["content"][-1]["text"]
    last = "ABCDE"[len(mc["options"]) - 1]
    assert "(A) " in prompt and f"({last}) " in prompt and "text of the correct option" in prompt  # options listed
    assert assistant["content"][0]["text"] == f"<answer>{mc['answer_text']}</answer>"
    letter = dataclasses.replace(model_cfg, answer_format="letter", visual_input="video", time_cue="prompt")
    (user,) = build_conversation(mc, letter, with_target=False)
    assert [item["type"] for item in user["content"]] == ["video", "text"]
    assert answer_for(mc, letter) == mc["answer"] and "letter" in user["content"][-1]["text"]
    numeric = records[2]
    assert answer_for(numeric, letter) == numeric["answer_text"]


@pytest.mark.parametrize("answer_format", ["letter", "text"])
def test_cot_target_keeps_the_reasoning_and_rewrites_the_answer(records, model_cfg, answer_format):
    cfg = dataclasses.replace(model_cfg, with_cot=True, answer_format=answer_format)
    for record in records:
        parsed = parse_cot(target_text(record, cfg))
        assert parsed is not None and parsed.answer == answer_for(record, cfg)
        assert parsed.thinking == parse_cot(record["cot"]).thinking
        assert "Reason step by step" in build_conversation(record, cfg, with_target=False)[0]["content"][-1]["text"]


@pytest.mark.parametrize("visual_input", ["images", "video"])
def test_labels_cover_only_the_assistant_turn(records, model_cfg, processor, visual_input):
    # mixed target lengths (CoT and answer-only rows would differ; here the records differ) and right padding
    cfg = dataclasses.replace(model_cfg, with_cot=True, visual_input=visual_input,
                              time_cue="tpe" if visual_input == "images" else "prompt")
    batch = encode_batch(records, processor, cfg, with_target=True)
    tokenizer = processor.tokenizer
    assert batch["attention_mask"][:, 0].all() and not batch["attention_mask"].all()  # right padded
    for row, record in enumerate(records):
        kept = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX]
        assert tokenizer.decode(kept) == target_text(record, cfg) + "<|im_end|>"
        # the unmasked tokens are one contiguous run ending at the first <|im_end|> after the header
        where = (batch["labels"][row] != IGNORE_INDEX).nonzero().flatten()
        assert (where.diff() == 1).all()
    key = "pixel_values" if visual_input == "images" else "pixel_values_videos"
    assert key in batch and batch[key].dtype == torch.float32


def test_labels_match_the_templates_assistant_mask(records, model_cfg, processor):
    """TRL's assistant_only_loss reads the template's {% generation %} mask: it must agree with ours.
    This is the call TRL 1.16's vision collator makes (images injected into the messages)."""
    from trl.data_utils import prepare_multimodal_messages

    batch = encode_batch(records[:2], processor, model_cfg, with_target=True)
    convs = [prepare_multimodal_messages(build_conversation(r, model_cfg, with_target=True), images=frames_for(r, model_cfg))
             for r in records[:2]]
    trl = processor.apply_chat_template(convs, tokenize=True, return_dict=True, return_tensors="pt",
                                        return_assistant_tokens_mask=True,
                                        processor_kwargs={"padding": True, "padding_side": "right"})
    assert torch.equal(trl["input_ids"], batch["input_ids"])
    assert torch.equal(trl["pixel_values"], batch["pixel_values"])
    assert torch.equal(trl["assistant_masks"].bool(), batch["labels"] != IGNORE_INDEX)


def test_generation_batch_is_left_padded_and_ends_with_the_header(records, model_cfg, processor):
    batch = encode_batch(records, processor, model_cfg, with_target=False)
    assert "labels" not in batch
    assert batch["attention_mask"][:, -1].all() and not batch["attention_mask"].all()  # left padded
    header = processor.tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    assert (batch["input_ids"][:, -len(header):] == torch.tensor(header)).all()


def test_frame_cache_keeps_frames_within_its_byte_budget_and_rereads_a_changed_file(tmp_path):
    from components.models.inputs import FrameCache

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"f{i}.png")
        Image.new("RGB", (32, 24), (40 * i, 0, 0)).save(paths[-1])
    frame_bytes = 8 * 8 * 3
    cache = FrameCache(max_bytes=2 * frame_bytes)  # room for two 8 px frames

    def load(p):
        return cache(str(p), 8, p.stat().st_mtime_ns)

    first = load(paths[0])
    assert first.size == (8, 8) and load(paths[0]) is first
    load(paths[1])
    load(paths[0])  # 0 is now the most recently used: 1 goes first
    load(paths[2])
    assert cache.cache_info() == {"hits": 2, "misses": 3, "frames": 2, "bytes": 2 * frame_bytes}
    assert load(paths[0]) is first and cache.cache_info()["misses"] == 3
    load(paths[1])
    assert cache.cache_info()["misses"] == 4  # evicted earlier: decoded again
    Image.new("RGB", (32, 24), (0, 0, 255)).save(paths[0])
    import os
    os.utime(paths[0], ns=(paths[0].stat().st_atime_ns, paths[0].stat().st_mtime_ns + 10**9))
    assert load(paths[0]).getpixel((0, 0)) == (0, 0, 255)  # a re-rendered frame is read again
    cache.cache_clear()
    assert cache.cache_info() == {"hits": 0, "misses": 0, "frames": 0, "bytes": 0}


# the smoke processor stamps images with their time (TPE): the images rows keep that cue
@pytest.mark.parametrize(("visual_input", "time_cue", "with_target"),
                         [("images", "tpe", True), ("images", "tpe", False), ("video", "prompt", True)])
def test_encoding_cache_collates_what_encode_batch_encodes(records, model_cfg, processor, visual_input, time_cue,
                                                           with_target):
    from components.models.inputs import EncodingCache

    cfg = dataclasses.replace(model_cfg, with_cot=True, visual_input=visual_input, time_cue=time_cue)
    cache = EncodingCache(processor, cfg, with_target=with_target)
    keyed = [(r["id"], r) for r in records]
    for batch in (keyed, keyed[::-1], keyed[1:3]):  # rows of mixed lengths, cached ones again, another order
        got, want = cache(batch), encode_batch([r for _, r in batch], processor, cfg, with_target=with_target)
        assert got.keys() == want.keys() and ("labels" in got) == with_target
        for key in want:
            assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), key
    info = cache.cache_info()
    assert info["misses"] == len(records) and info["hits"] == len(records) + 2 and info["records"] == len(records)


def test_encoding_cache_shares_pixels_and_stays_within_its_byte_budget(records, model_cfg, processor):
    from components.models.inputs import EncodingCache

    by_name = [r for r in records if not r["som_image"]]
    same_frames = [r for r in by_name if r["frame_paths"] == by_name[0]["frame_paths"]]
    cache = EncodingCache(processor, model_cfg, with_target=True)
    cache([(r["id"], r) for r in same_frames])
    # a clip's questions see the same frames: their pixels are held once
    assert cache.cache_info()["shared"] == 2  # the pixels and the grid
    one = EncodingCache(processor, model_cfg, with_target=True)
    one([(records[0]["id"], records[0])])
    small = EncodingCache(processor, model_cfg, with_target=True, max_bytes=one.bytes)  # room for one record
    for r in [*records, records[0]]:
        small([(r["id"], r)])
        # the last record alone is kept, its bytes counted once each (shared tensors freed with the others)
        assert small.cache_info()["records"] == 1 and small.cache_info()["shared"] == 2
        assert small.bytes == sum(v.nbytes for v in small._rows[r["id"]][0].values())
    assert small.cache_info()["misses"] == len(records) + 1  # evicted earlier: encoded again


def test_split_encoded_refuses_a_tensor_it_cannot_assign_to_a_record():
    from components.models.inputs import split_encoded

    batch = {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.ones(2, 5, dtype=torch.long),
             "pixel_values": torch.zeros(8, 3), "image_grid_thw": torch.tensor([[1, 2, 2], [1, 2, 2]]),
             "audio_values": torch.zeros(3, 7)}
    with pytest.raises(ValueError, match=r"cannot split the processor's \['audio_values'\]"):
        split_encoded(batch, right=True)
    del batch["audio_values"]
    rows = split_encoded(batch, right=True)
    assert [r["pixel_values"].shape[0] for r in rows] == [4, 4] and rows[1]["image_grid_thw"].tolist() == [[1, 2, 2]]
