"""Curated QA records -> chat conversations -> model inputs with labels on the assistant turn only.

Follows the papers' input: R4D-Bench's prompt ("These images are uniformly sampled from a video of N
seconds", the question, the lettered options), frames picked uniformly with the first and last kept,
and for region-prompted questions 4D-RGPT's Set-of-Marks image in place of the first frame. The target
is MLLM-4D's ST-CoT or only its ``<answer>`` tag (``model.with_cot``).

Departures: frames are squashed to ``frame_size`` squares (Qwen keeps the aspect ratio; equal sizes make
batches uniform and the token count known); with ``answer_format: text`` the answer is the option text,
not its letter, because a tiny random-init model cannot learn to bind letters to shuffled options on a
CPU budget (docs/stack.md). The options are listed either way, so prompts keep the benchmark shape.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from transformers import ProcessorMixin
from transformers.video_utils import VideoMetadata

from components.config import ModelConfig
from components.curation.cot import vec_text
from components.curation.exports import prompt_text
from components.models.tokenizer import TEMPLATE_WORDS
from components.models.tpe import stamp

_ANSWER_TAG = re.compile(r"<answer>.*?</answer>", re.DOTALL)
IGNORE_INDEX = -100
_FONT = ImageFont.load_default(size=10)


def frame_indices(num_available: int, num_frames: int) -> list[int]:
    """``num_frames`` indices spread uniformly over ``num_available``, always the first and the last."""
    if num_frames > num_available:
        raise ValueError(f"model.num_frames={num_frames} but the record has {num_available} frames; lower "
                         "model.num_frames or raise curation.frames_per_record")
    if num_frames == 1:
        return [0]
    return [int(i) for i in np.linspace(0, num_available - 1, num_frames).round()]


# Record keys for frames already in memory (the served model decodes them from the request): the
# clip's frames as PIL images, one per timestamp, in place of ``frame_paths``, and the Set-of-Marks
# image in place of the ``som_image`` path.
FRAME_IMAGES = "frame_images"
SOM_FRAME = "som_frame"


def frames_for(record: dict, cfg: ModelConfig, *, blank: bool = False) -> list[Image.Image]:
    """The record's frames for the model, RGB, ``frame_size`` square; the Set-of-Marks image (when the
    question names regions) replaces the first frame, as the marks are drawn on that frame. ``blank``:
    the same number of black frames (the blind baseline); ``cfg.blank_frames`` blanks them always (the
    text-only-trained control: training, gates and evaluation alike). The time cue is applied here: ``tpe``
    stamps each frame with its timestamp (``components.models.tpe``), ``marks`` burns "t s" into it.

    Frames come from files (``frame_paths``, ``som_image``) or, when the record holds ``FRAME_IMAGES``
    (and ``SOM_FRAME``), from memory; both are resized the same way, so a PNG sent to the served model
    gives the pixels evaluation read from the file."""
    in_memory = record.get(FRAME_IMAGES)
    picked = frame_indices(len(in_memory if in_memory is not None else record["frame_paths"]), cfg.num_frames)
    if blank or cfg.blank_frames:
        frames = [Image.new("RGB", (cfg.frame_size, cfg.frame_size)) for _ in picked]
    elif in_memory is not None:
        images = [in_memory[i] for i in picked]
        if record.get(SOM_FRAME) is not None:
            images[0] = record[SOM_FRAME]
        frames = [_fit_frame(image, cfg.frame_size) for image in images]
    else:
        paths = [record["frame_paths"][i] for i in picked]
        if record.get("som_image"):
            paths[0] = record["som_image"]
        # The modification time is part of the key, so a re-rendered frame is read again.
        frames = [_load_frame(str(path), cfg.frame_size, os.stat(path).st_mtime_ns) for path in paths]
    times = [record["timestamps"][i] - record["timestamps"][0] for i in picked]
    if cfg.time_cue == "tpe":
        return [stamp(frame, t) for frame, t in zip(frames, times, strict=True)]
    if cfg.time_cue == "marks":
        return [burn_in_time(frame, t) for frame, t in zip(frames, times, strict=True)]
    return frames


def burn_in_time(frame: Image.Image, seconds: float) -> Image.Image:
    """4D-RGPT's "P4D+mark": the timestamp as text in the frame's top-left corner, white on black."""
    out = frame.copy()
    draw = ImageDraw.Draw(out)
    text = f"{seconds:.2f}s"
    box = draw.textbbox((1, 1), text, font=_FONT)
    draw.rectangle(box, fill=(0, 0, 0))
    draw.text((1, 1), text, fill=(255, 255, 255), font=_FONT)
    return out


def time_line(record: dict, cfg: ModelConfig) -> str | None:
    """The prompt's time statement: 4D-RGPT's "P4D+prompt" sentence (duration and fps) for ``prompt``;
    nothing for the other cues (``tpe`` and ``marks`` carry time in the frames, ``none`` nowhere), so the
    Tab. 6 comparison changes one thing at a time."""
    if cfg.time_cue != "prompt":
        return None
    frames, times = record["frames"], record["timestamps"]
    seconds = times[-1] - times[0]
    fps = (frames[-1] - frames[0]) / seconds if seconds > 0 else 0.0
    return (f"The following video frames are sampled from a video {seconds:.2f} seconds long and recorded at "
            f"{fps:g} frames per second.")


class FrameCache:
    """Decoded, resized frames by ``(path, size, mtime_ns)``, the least recently used dropped first once they
    hold more than ``max_bytes``. Every question of a clip shares its frames and an epoch visits every clip:
    PNG decoding was half of the encoding time (profiled), and a cache of 1,024 frames held a fifth of the
    default's 4,600 frames, so SFT's shuffled batches decoded most frames again. A byte budget, not a
    count, bounds it at any frame size (56 px: ~9 KB a frame; 448 px: ~600 KB). Thread-safe; callers must
    not modify the returned image (the processor does not)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.bytes, self.hits, self.misses = max_bytes, 0, 0, 0
        self._frames: OrderedDict[tuple[str, int, int], Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, path: str, size: int, mtime_ns: int) -> Image.Image:
        key = (path, size, mtime_ns)
        with self._lock:
            if key in self._frames:
                self.hits += 1
                self._frames.move_to_end(key)
                return self._frames[key]
        with Image.open(path) as image:
            frame = _fit_frame(image, size)
        with self._lock:
            self.misses += 1
            if key not in self._frames:
                self._frames[key] = frame
                self.bytes += _nbytes(frame)
            while self.bytes > self.max_bytes and len(self._frames) > 1:
                self.bytes -= _nbytes(self._frames.popitem(last=False)[1])
        return frame

    def cache_clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self.bytes = self.hits = self.misses = 0

    def cache_info(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "frames": len(self._frames), "bytes": self.bytes}


def _nbytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())


_load_frame = FrameCache(max_bytes=512 * 2**20)


def _fit_frame(image: Image.Image, size: int) -> Image.Image:
    return image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def answer_for(record: dict, cfg: ModelConfig) -> str:
    """What goes inside ``<answer>``: the letter or the option text (mc), the number as text (numeric)."""
    if record["answer_type"] == "mc" and cfg.answer_format == "letter":
        return str(record["answer"])
    return str(record["answer_text"])


def target_text(record: dict, cfg: ModelConfig) -> str:
    """The assistant turn: the ST-CoT with its ``<answer>`` rewritten to ``answer_for``, or only the tag."""
    answer = f"<answer>{answer_for(record, cfg)}</answer>"
    if not cfg.with_cot:
        return answer
    if cfg.cot_style == "state":
        return f"<thinking>\n{spatial_state(record['solution'])}\n</thinking>\n{answer}"
    cot, n = _ANSWER_TAG.subn(lambda _: answer, record["cot"])
    if n != 1:
        raise ValueError(f"record {record['id']}: the ST-CoT has {n} <answer> tags, expected 1")
    return cot


def spatial_state(solution: dict) -> str:
    """MLLM-4D's Spatial State alone: camera (and object) centers at the initial and the final frame."""
    lines = []
    for i, name in enumerate(("Initial", "Final")):
        line = f"{name}: Camera Center: {vec_text(solution['camera_center'][i])}"
        if solution.get("object_center") and solution["object_center"][i] is not None:
            line += f"; Object Center: {vec_text(solution['object_center'][i])}"
        lines.append(line)
    return "\n".join(lines)


def instruction(record: dict, cfg: ModelConfig) -> str:
    if record["answer_type"] == "mc":
        what = "the letter of the correct option" if cfg.answer_format == "letter" else "the text of the correct option"
    else:
        what = "a number" + (f" in {record['unit']}" if record.get("unit") else "")
    if cfg.with_cot:
        return f"Reason step by step inside <thinking></thinking>, then answer with {what} inside <answer></answer>."
    return f"Answer with {what} inside <answer></answer>."


def build_conversation(record: dict, cfg: ModelConfig, *, with_target: bool) -> list[dict]:
    """The chat messages for a record: the user turn (frames + prompt), then the target when asked."""
    visual = [{"type": "video"}] if cfg.visual_input == "video" else [{"type": "image"} for _ in range(cfg.num_frames)]
    text = prompt_text(record, time_line=time_line(record, cfg)) + "\n" + instruction(record, cfg)
    messages = [{"role": "user", "content": [*visual, {"type": "text", "text": text}]}]
    if with_target:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": target_text(record, cfg)}]})
    return messages


def tokenizer_corpus(records: Iterable[dict], cfg: ModelConfig) -> list[str]:
    """Texts to train the tiny model's tokenizer on: every record's prompt and target, as the model sees them,
    with the chat template's own words (a byte per character otherwise: ~25 of a record's ~110 tokens)."""
    return [TEMPLATE_WORDS + prompt_text(r, time_line=time_line(r, cfg)) + "\n" + instruction(r, cfg) + "\n"
            + target_text(r, cfg) for r in records]


def _video_metadata(record: dict, cfg: ModelConfig) -> VideoMetadata:
    """The sampled frames as a video of their own: fps from the record's timestamps (Qwen2.5-VL spaces
    M-RoPE time positions by it; Qwen3-VL writes the timestamps into the prompt)."""
    times = [record["timestamps"][i] for i in frame_indices(len(record["timestamps"]), cfg.num_frames)]
    duration = times[-1] - times[0]
    fps = (len(times) - 1) / duration if duration > 0 else 1.0
    return VideoMetadata(total_num_frames=len(times), fps=fps, frames_indices=list(range(len(times))))


def assistant_labels(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """Labels = ``input_ids`` on the last assistant turn (its content and ``<|im_end|>``), -100 elsewhere.

    Found by token ids, not string offsets: the last ``<|im_start|>``, the ``assistant\\n`` header
    tokens, then up to and including the next ``<|im_end|>``. Works with either padding side.
    """
    start_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    header = tokenizer("assistant\n", add_special_tokens=False)["input_ids"]
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, ids in enumerate(input_ids.tolist()):
        starts = [i for i, t in enumerate(ids) if t == start_id]
        if not starts or ids[starts[-1] + 1 : starts[-1] + 1 + len(header)] != header:
            raise ValueError(f"batch row {row}: no assistant turn found (expected <|im_start|>assistant\\n)")
        begin = starts[-1] + 1 + len(header)
        ends = [i for i in range(begin, len(ids)) if ids[i] == end_id]
        if not ends:
            raise ValueError(f"batch row {row}: the assistant turn has no <|im_end|> (truncated?)")
        labels[row, begin : ends[0] + 1] = input_ids[row, begin : ends[0] + 1]
    return labels


def encode_batch(records: list[dict], processor: ProcessorMixin, cfg: ModelConfig, *, with_target: bool,
                 blank_frames: bool = False) -> dict[str, torch.Tensor]:
    """Model inputs for ``records``: ``input_ids``, ``attention_mask``, pixel tensors and grids, and with
    ``with_target`` the ``labels`` (right padding); without, a generation prompt (left padding), so
    ``model.generate(**batch)`` continues every row from its last token."""
    texts = [
        processor.apply_chat_template(build_conversation(r, cfg, with_target=with_target), tokenize=False,
                                      add_generation_prompt=not with_target)
        for r in records
    ]
    frames = [frames_for(r, cfg, blank=blank_frames) for r in records]
    visual: dict = {"images": frames}
    if cfg.visual_input == "video":
        # frames are already picked: the processor must not resample them (Qwen3-VL's default would)
        metadata = [_video_metadata(r, cfg) for r in records]
        visual = {"videos": frames, "videos_kwargs": {"video_metadata": metadata, "do_sample_frames": False}}
    batch = processor(text=texts, **visual, padding=True, padding_side="right" if with_target else "left",
                      return_tensors="pt")
    out = {key: value for key, value in batch.items() if isinstance(value, torch.Tensor)}
    if with_target:
        labels = assistant_labels(out["input_ids"], processor.tokenizer)
        labels[out["attention_mask"] == 0] = IGNORE_INDEX
        out["labels"] = labels
    return out


def token_keys(encoded: dict[str, torch.Tensor]) -> list[str]:
    """The per-token tensors of an encoding (``input_ids``' shape: ids, mask, labels, token types); the
    others are per image or video: the pixels and their grids (``VISUAL_KEYS``)."""
    shape = encoded["input_ids"].shape
    return [key for key, value in encoded.items() if value.shape == shape]


# pixel tensor -> its grid (one row per image or video; the pixel rows of one are the product of its grid row)
VISUAL_KEYS = {"pixel_values": "image_grid_thw", "pixel_values_videos": "video_grid_thw"}
# the other tensors with one entry per video (Qwen2.5-VL's M-RoPE time spacing) -> that grid
PER_VIDEO_KEYS = {"second_per_grid_ts": "video_grid_thw"}


def split_encoded(batch: dict[str, torch.Tensor], *, right: bool) -> list[dict[str, torch.Tensor]]:
    """``encode_batch``'s tensors back into one encoding per record (padding dropped; copies, so a kept
    row does not hold the batch's storage); ``collate_encoded`` reverses it."""
    tokens, size = token_keys(batch), len(batch["input_ids"])
    unknown = sorted(set(batch) - set(tokens) - set(VISUAL_KEYS) - set(VISUAL_KEYS.values()) - set(PER_VIDEO_KEYS))
    if unknown:
        raise ValueError(f"cannot split the processor's {unknown} by record (known: per-token tensors, "
                         f"{VISUAL_KEYS}, {PER_VIDEO_KEYS})")
    rows: list[dict[str, torch.Tensor]] = [{} for _ in range(size)]
    for i, n in enumerate(batch["attention_mask"].sum(dim=1).tolist()):
        for key in tokens:
            rows[i][key] = (batch[key][i:i + 1, :n] if right else batch[key][i:i + 1, batch[key].shape[1] - n:]).clone()
    for pixels, grid in VISUAL_KEYS.items():
        if grid not in batch:
            continue
        per = len(batch[grid]) // size  # every record has the same number of images (or videos)
        start = 0
        for i in range(size):
            rows[i][grid] = batch[grid][i * per:(i + 1) * per].clone()
            n = int(rows[i][grid].prod(dim=-1).sum())
            rows[i][pixels] = batch[pixels][start:start + n].clone()
            rows[i].update({key: batch[key][i * per:(i + 1) * per].clone()
                            for key, of in PER_VIDEO_KEYS.items() if of == grid and key in batch})
            start += n
    return rows


def collate_encoded(rows: list[dict[str, torch.Tensor]], pad_token_id: int, *, right: bool) -> dict[str, torch.Tensor]:
    """One encoding per record (``split_encoded``) as one batch, the tensors ``encode_batch`` returns for
    the records together: the per-token ones padded as the processor pads (the pad token, mask 0, labels
    ignored), the pixel tensors and grids concatenated in row order."""
    tokens = set(token_keys(rows[0]))
    width = max(row["input_ids"].shape[1] for row in rows)
    pads = {"input_ids": pad_token_id, "labels": IGNORE_INDEX}
    out = {}
    for key in rows[0]:
        if key not in tokens:
            out[key] = torch.cat([row[key] for row in rows])
            continue
        padded = []
        for row in rows:
            value = row[key]
            fill = value.new_full((1, width - value.shape[1]), pads.get(key, 0))
            padded.append(torch.cat([value, fill] if right else [fill, value], dim=1))
        out[key] = torch.cat(padded)
    return out


class EncodingCache:
    """Records' model inputs, each encoded once and collated per batch (``collate_encoded``): the same
    tensors as ``encode_batch`` of the batch. Training visits every record once an epoch (the default's SFT:
    ~6 epochs), and the processor's image and text work was ~15% of a tiny-model SFT step (profiled), done
    again each time. A batch's new records are encoded together (one record at a time cost 3x) and split
    (``split_encoded``). Pixel tensors are kept once per content (a clip's questions share their frames); the
    least recently used records go first once the cache holds more than ``max_bytes``, so it is bounded at
    any frame size and data size. Not thread-safe: one per collator."""

    def __init__(self, processor: ProcessorMixin, cfg: ModelConfig, *, with_target: bool,
                 max_bytes: int = 1 << 30) -> None:
        self.processor, self.cfg, self.with_target, self.max_bytes = processor, cfg, with_target, max_bytes
        self.bytes = self.hits = self.misses = 0
        self._rows: OrderedDict[str, tuple[dict[str, torch.Tensor], list[str]]] = OrderedDict()
        self._shared: dict[str, list] = {}  # content digest -> [tensor, records holding it]

    def __call__(self, keyed: list[tuple[str, dict]]) -> dict[str, torch.Tensor]:
        """``keyed``: (key, record) pairs, the key naming the record's content (its JSON text)."""
        new = {key: record for key, record in keyed if key not in self._rows}
        if new:
            encoded = encode_batch(list(new.values()), self.processor, self.cfg, with_target=self.with_target)
            for key, row in zip(new, split_encoded(encoded, right=self.with_target), strict=True):
                self._keep(key, row)
        self.misses += len(new)
        self.hits += len(keyed) - len(new)
        rows = []
        for key, _ in keyed:
            self._rows.move_to_end(key)
            rows.append(self._rows[key][0])
        self._evict(keep=len(keyed))
        return collate_encoded(rows, self.processor.tokenizer.pad_token_id, right=self.with_target)

    def _keep(self, key: str, row: dict[str, torch.Tensor]) -> None:
        tokens, digests = set(token_keys(row)), []
        for name, value in row.items():
            if name in tokens:
                self.bytes += value.nbytes
                continue
            digest = name + ":" + hashlib.blake2b(value.numpy().tobytes(), digest_size=16).hexdigest()
            if digest not in self._shared:
                self._shared[digest] = [value, 0]
                self.bytes += value.nbytes
            self._shared[digest][1] += 1
            row[name] = self._shared[digest][0]
            digests.append(digest)
        self._rows[key] = (row, digests)

    def _evict(self, keep: int) -> None:
        """Drop the least recently used records while over budget, never the ``keep`` most recent (the batch)."""
        while self.bytes > self.max_bytes and len(self._rows) > keep:
            _, (row, digests) = self._rows.popitem(last=False)
            self.bytes -= sum(row[name].nbytes for name in token_keys(row))
            for digest in digests:
                held = self._shared[digest]
                held[1] -= 1
                if held[1] == 0:
                    self.bytes -= held[0].nbytes
                    del self._shared[digest]

    def cache_info(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "records": len(self._rows), "shared": len(self._shared),
                "bytes": self.bytes}
