"""Learning probe: which settings of the pipeline's own input path let the tiny model learn motion direction.

    .venv/bin/python benchmarks/learning_probe.py --list
    .venv/bin/python benchmarks/learning_probe.py --run positive [--run video ...] [--steps N] [--workdir /tmp/probe]
    .venv/bin/python benchmarks/learning_probe.py --run positive --set vision=frozen --name my_variant
    .venv/bin/python benchmarks/learning_probe.py --report        # rewrite the markdown from the JSON

A plain PyTorch loop (AdamW, loss on the answer tokens only) around the project's own pieces, so a setting
that learns here is a setting the pipeline can use, and one that does not, does not:

- frames: ``components.scenes`` (``sample_scene`` + the left view of ``render``) with a static camera, only
  the 4 frames the model sees (``curation.clip.sample_frames`` then ``models.inputs.frame_indices``, as in
  a curated record), 160x120 PNGs cached in a pool under ``--workdir`` (fresh clips are cheap: ~2 ms a frame);
- labels: the SceneSpec's ground truth, the object's centre at the first and the last frame, classified as
  ``components.curation.questions`` does (still below 0.2 m/s, ``_dominant`` axis, ambiguous ones dropped);
- records: shaped like the curated ones (question naming the object by colour + shape, or by region with the
  Set-of-Marks image as the first frame; 4 shuffled options of the 5 directions; the option text as target);
- model: ``build_base_model`` / ``load_model`` / ``apply_trainable`` with a ``ModelConfig``; inputs and
  labels: ``encode_batch`` (TPE, video or images, frame size: all the pipeline's code).

Training samples are drawn class-balanced (each of the 5 answers equally often) from the first
``train_clips`` clips of the pool, fresh every step. Evaluation: held-out clips (another scene seed), one
question per clip, class-balanced; the answer is the option with the highest sequence log-likelihood of
``<answer>option</answer><|im_end|>``; the control gives each record another held-out clip's frames
(shuffled video). Chance is 25% (4 options). Each run appends to ``benchmarks/results/learning_probe.json``
(keyed by run name) and rewrites ``learning_probe.md`` (with ``learning_probe_notes.md``, the findings, appended).

Diagnostics beyond the pipeline's settings: ``data=square`` (a red square on black, 2 answers), ``answers=lr``,
``texture_gain``, ``options=0``, ``prompt_style=short``, ``target=word``, ``rope_theta`` (patched in this
process only) and ``visual_lr_mult`` (a learning rate for vision + projector: SFT has one learning rate today).
One run takes 2-4 minutes on one core (render the pools once: ~75 s for 5000 + 1500 clips).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, loadavg, rounded

OUT_JSON = RESULTS / "learning_probe.json"
DIRECTIONS = ("to the left", "to the right", "toward the camera", "away from the camera", "it does not move")
WORD = dict(zip(DIRECTIONS, ("left", "right", "toward", "away", "still")))  # the diagnostic target "word"
QUESTION = "In which direction does {name} move, as seen from the camera's initial position?"
STILL_SPEED, MARGIN = 0.2, 0.35  # curation.thresholds.still_speed / margin (params.yaml)
EVAL_SEED_OFFSET = 1000  # held-out clips: the same scene family under another seed


@dataclass(frozen=True)
class Probe:
    """One run. Defaults = the configuration most likely to learn (the positive control)."""

    # data
    data: str = "render"  # render (components.scenes) | square (diagnostic: a red 10 px square on black, 2 answers)
    answers: str = "all"  # all (the 5 directions) | lr (only clips whose answer is left or right)
    min_objects: int = 1
    max_objects: int = 1
    hfov_deg: float = 60.0
    texture_gain: float = 0.5  # components.scenes.render.TEXTURE_GAIN (0: flat-shaded surfaces, a diagnostic)
    clip_frames: int = 16  # scenes.num_frames; the record keeps 8 (curation), the model sees 4
    fps_choices: tuple[float, ...] = (4.0, 6.0, 10.0)  # scenes.fps_choices
    train_clips: int = 5000  # distinct training clips (the pool's first N)
    options: int = 4  # options listed in the prompt (curation.num_options); 0: none listed (a diagnostic)
    prompt: str = "name"  # name | region | mix (mix: half the records by region, SoM as the first frame)
    # model (ModelConfig fields)
    visual_input: str = "images"
    frame_size: int = 56
    vision: str = "full"  # model.trainable.vision
    projector: str = "full"  # model.trainable.projector (the merger)
    time_cue: str = "none"
    num_frames: int = 4
    hidden_size: int = 128
    merge: int = 2  # model.tiny.spatial_merge_size: tokens per frame = (frame_size / (14 * merge))^2
    # diagnostics that change code, not params (each patched in this process only; the pipeline cannot set them)
    rope_theta: float = 0.0  # > 0: the LLM's M-RoPE base (the factory fixes 1e6, which leaves height/width ~0 rad)
    prompt_style: str = "pipeline"  # pipeline (R4D-Bench prompt + options + instruction) | short ("Direction?")
    target: str = "tag"  # tag (<answer>option</answer>, the pipeline) | word (one word: left/right/toward/away/still)
    # optimisation
    lr: float = 1e-3
    visual_lr_mult: float = 1.0  # the vision tower's and projector's learning rate = lr x this (param groups)
    schedule: str = "constant"  # constant | cosine (the pipeline: cosine, warmup 5%)
    warmup: float = 0.0
    steps: int = 400
    batch: int = 32
    epochs_of: int = 0  # > 0: a fixed set of this many training records (the pipeline's sft split), reused
    seed: int = 0

    def family(self) -> str:
        if self.data == "square":
            return "square56"
        fps = "-".join(f"{f:g}" for f in self.fps_choices)
        tex = "" if self.texture_gain == 0.5 else f"_tex{self.texture_gain:g}"
        return f"o{self.min_objects}-{self.max_objects}_h{self.hfov_deg:g}_n{self.clip_frames}_fps{fps}{tex}"


BASE = Probe()
SQUARE = {"data": "square", "train_clips": 2000, "options": 0}
M4 = {"visual_input": "video", "merge": 4}  # the whole 56 px frame (pair) in one visual token
SLOW = {**M4, "projector": "frozen", "visual_lr_mult": 0.1}  # the recipe that learns: vision at lr x 0.1
# The pipeline's default input path (params.yaml model.*; scenes 2-4 objects; records by name and by region).
PIPELINE = {"min_objects": 2, "max_objects": 4, "prompt": "mix", "vision": "frozen", "time_cue": "tpe",
            "train_clips": 600, "schedule": "cosine", "warmup": 0.05}
RUNS: dict[str, dict] = {
    # 1. rendered clips (1 object, static camera): the positive control as briefed, and changes toward the recipe
    "positive": {},
    "positive_video": {"visual_input": "video"},
    "lr3e-4": {"lr": 3e-4},
    "easy": {"texture_gain": 0.0, "hfov_deg": 35.0},  # a diagnostic: flat shading, objects 1.7x larger
    "m4_frozen_video": {**M4, "vision": "frozen", "projector": "frozen", "steps": 600},
    "m4_slowvision_video": {**SLOW, "steps": 600},
    "easiest": {**SLOW, "texture_gain": 0.0, "hfov_deg": 35.0, "prompt_style": "short", "target": "word", "steps": 600},
    # 2. a trivial synthetic clip (red square on black, left/right): what silences and what the LLM can see
    "square": {**SQUARE, "steps": 400},
    "square_m2_frozen": {**SQUARE, "visual_input": "video", "vision": "frozen", "projector": "frozen", "steps": 600},
    "square_m4_vision": {**SQUARE, **M4, "projector": "frozen", "steps": 600},
    "square_m4_frozen": {**SQUARE, **M4, "vision": "frozen", "projector": "frozen", "steps": 600},
    "square_m4_slowvision": {**SQUARE, **SLOW, "steps": 600},
    # 3. the recipe back on rendered clips: left/right, then with the options listed, then all five answers
    "lr_m4_slowvision": {**SLOW, "answers": "lr", "options": 0, "steps": 600},
    "lr_m4_slowvision_options": {**SLOW, "answers": "lr", "steps": 600},
    "all5_m4_slowvision": {**SLOW, "options": 0, "steps": 800},
    # 4. next rungs (not run yet): toward the pipeline from the recipe, one change at a time
    "lr_m4_frozen": {**M4, "answers": "lr", "options": 0, "vision": "frozen", "projector": "frozen", "steps": 600},
    "lr_recipe_objects2-4": {**SLOW, "answers": "lr", "min_objects": 2, "max_objects": 4, "steps": 600},
    "lr_recipe_region_mix": {**SLOW, "answers": "lr", "prompt": "mix", "steps": 600},
    "lr_recipe_clips600": {**SLOW, "answers": "lr", "train_clips": 600, "steps": 600},
    "lr_recipe_records650": {**SLOW, "answers": "lr", "train_clips": 600, "epochs_of": 650, "steps": 600},
    "lr_recipe_cosine": {**SLOW, "answers": "lr", "schedule": "cosine", "warmup": 0.05, "steps": 600},
    "pipeline": PIPELINE,
}


# ----------------------------------------------------------------------------------------------- data


def labels_of(spec) -> list[dict]:
    """Per object: the answer to "in which direction does it move" from the ground truth, as curation labels it."""
    from components.curation.questions import _between, _dominant
    from components.scenes import motion as mo

    times = [0.0, (spec.num_frames - 1) / spec.fps]
    duration = times[1]
    out = []
    for obj in spec.objects:
        c = mo.object_centers(obj, times, spec.camera_height_m)
        d = c[1] - c[0]  # static camera: world = the camera frame
        chord = float(math.hypot(d[0], d[2])) / duration
        moving = chord >= STILL_SPEED
        direction, dominant = _dominant(float(d[0]), float(d[2]))
        truth = direction if moving else "it does not move"
        clear = not _between(chord, STILL_SPEED, MARGIN) and (dominant or not moving)
        out.append({"object_id": obj.id, "label": obj.label, "answer": truth, "clear": clear,
                    "kind": obj.motion, "sampled_direction": obj.direction})
    return out


def square_pool(split: str, n: int, folder: Path) -> list[dict]:
    """Diagnostic clips: a red 10 px square on black, 56 px, 4 frames, moving 6 px a frame left or right
    from a random start (its start column alone also tells the answer: no comparison of frames needed)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11 + (EVAL_SEED_OFFSET if split == "eval" else 0))
    clips = []
    for i in range(n):
        answer = DIRECTIONS[i % 2]
        sign = 1 if answer == "to the right" else -1
        x0, y = int(rng.integers(8, 28) if sign > 0 else rng.integers(28, 48)), int(rng.integers(10, 46))
        paths = []
        for k in range(4):
            path = folder / f"c{i:05d}_{k}.png"
            if not path.exists():
                image = np.zeros((56, 56, 3), np.uint8)
                x = x0 + sign * 6 * k
                image[y - 5 : y + 5, x - 5 : x + 5] = (220, 30, 30)
                Image.fromarray(image).save(path)
            paths.append(str(path))
        clips.append({"clip": f"{split}{i:05d}", "frames": [0, 1, 2, 3], "timestamps": [0.0, 0.5, 1.0, 1.5],
                      "frame_paths": paths, "som": None,
                      "objects": [{"object_id": 1, "label": "red cube", "answer": answer, "clear": True,
                                   "token": None, "kind": "straight", "sampled_direction": answer}]})
    return clips


def render_pool(p: Probe, split: str, n: int, root: Path, log) -> list[dict]:
    """The first ``n`` clips of the family's pool for ``split`` (train / eval): rendered once, cached as PNG."""
    import cv2

    from components.config import ScenesConfig
    from components.curation.clip import sample_frames
    from components.curation.regions import draw_set_of_marks
    from components.models.inputs import frame_indices
    from components.scenes import motion as mo
    from components.scenes import render as rd
    from components.scenes import sample_scene

    folder = root / "pool" / p.family() / split
    if p.data == "square":
        return square_pool(split, n, folder)
    index = folder / "index.jsonl"
    clips = [json.loads(line) for line in index.open()] if index.exists() else []
    if len(clips) >= n:
        return clips[:n]
    folder.mkdir(parents=True, exist_ok=True)
    seed = 7 + (EVAL_SEED_OFFSET if split == "eval" else 0)
    cfg = ScenesConfig(seed=seed, num_clips=max(n, 1), num_frames=p.clip_frames, fps=8.0,
                       fps_choices=tuple(p.fps_choices), width=160, height=120, hfov_deg=p.hfov_deg,
                       min_objects=p.min_objects, max_objects=p.max_objects, ego_motion_fraction=0.0)
    rd.TEXTURE_GAIN = p.texture_gain  # the renderer reads this module global at shading time
    record_frames = sample_frames(p.clip_frames, 8)  # curation.frames_per_record
    seen = [record_frames[i] for i in frame_indices(len(record_frames), 4)]  # model.num_frames
    start = time.perf_counter()
    with index.open("a") as fh:
        for i in range(len(clips), n):
            spec = sample_scene(cfg, i)
            paths, som = [], None
            for k, t in enumerate(seen):
                poses = rd.object_poses(spec, t)
                hits = rd._cast(spec, mo.camera_pose(spec, t), poses)
                image = rd._shade(spec, hits, poses)
                path = folder / f"c{i:05d}_{k}.png"
                cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                paths.append(str(path))
                if k == 0:  # Set-of-Marks on the first frame: every visible object, <R1>.. in id order
                    ids = [o.id for o in spec.objects if (hits.surface == o.id).any()]
                    marked = draw_set_of_marks(image, [hits.surface == j for j in ids], [f"<R{m + 1}>" for m in range(len(ids))])
                    som = str(folder / f"c{i:05d}_som.png")
                    cv2.imwrite(som, cv2.cvtColor(marked, cv2.COLOR_RGB2BGR))
                    tokens = {j: f"<R{m + 1}>" for m, j in enumerate(ids)}
            objs = labels_of(spec)
            for o in objs:
                o["token"] = tokens.get(o["object_id"])
            clip = {"clip": f"{split}{i:05d}", "frames": seen, "timestamps": [round(t / spec.fps, 4) for t in seen],
                    "frame_paths": paths, "som": som, "objects": objs}
            fh.write(json.dumps(clip) + "\n")
            clips.append(clip)
            if (i + 1) % 500 == 0:
                log(f"  rendered {i + 1}/{n} {split} clips of {p.family()} ({time.perf_counter() - start:.0f} s)")
    return clips


def make_record(clip: dict, obj: dict, variant: str, rng, n_options: int = 4) -> dict:
    """A record shaped like a curated translational one (fields as in curated/sft.jsonl)."""
    from components.curation.schema import LETTERS

    others = [d for d in DIRECTIONS if d != obj["answer"]]
    options = [obj["answer"], *(others[i] for i in rng.permutation(len(others))[:3])]
    options = [options[i] for i in rng.permutation(4)][: n_options or 4]
    if n_options == 0:
        options = []
    region = variant == "region" and obj["token"] is not None
    name = obj["token"] if region else f"the {obj['label']}"
    return {
        "id": f"{clip['clip']}-{obj['object_id']}-{variant}", "qid": f"{clip['clip']}:{obj['object_id']}",
        "clip_id": clip["clip"], "split": "probe", "category": "translational", "answer_type": "mc",
        "prompt_variant": "region" if region else "name", "question": QUESTION.format(name=name),
        "options": options, "answer": LETTERS[options.index(obj["answer"])] if options else None, "answer_text": obj["answer"],
        "answer_value": None, "unit": None, "frames": clip["frames"], "timestamps": clip["timestamps"],
        "frame_paths": clip["frame_paths"],
        "regions": [{"token": obj["token"], "object_id": obj["object_id"], "label": obj["label"]}] if region else [],
        "som_image": clip["som"] if region else None,
    }


def variant_for(p: Probe, rng) -> str:
    return {"name": "name", "region": "region", "mix": "region" if rng.random() < 0.5 else "name"}[p.prompt]


class TrainSampler:
    """Class-balanced records from the first ``train_clips`` clips: pick an answer, then a (clip, object)."""

    def __init__(self, p: Probe, clips: list[dict], seed: int) -> None:
        import numpy as np

        self.p, self.rng = p, np.random.default_rng(seed)
        self.by_answer: dict[str, list] = defaultdict(list)
        for clip in clips:
            for obj in clip["objects"]:
                if obj["clear"] and allowed(p, obj["answer"]):
                    self.by_answer[obj["answer"]].append((clip, obj))
        self.answers = sorted(self.by_answer)
        self.fixed = None
        if p.epochs_of:  # the pipeline's situation: a fixed sft split seen again every epoch
            self.fixed = [self._fresh() for _ in range(p.epochs_of)]

    def _fresh(self) -> dict:
        answer = self.answers[self.rng.integers(len(self.answers))]
        items = self.by_answer[answer]
        clip, obj = items[self.rng.integers(len(items))]
        return make_record(clip, obj, variant_for(self.p, self.rng), self.rng, self.p.options)

    def batch(self, n: int) -> list[dict]:
        if self.fixed is not None:
            return [self.fixed[i] for i in self.rng.integers(len(self.fixed), size=n)]
        return [self._fresh() for _ in range(n)]

    def distinct_clips(self) -> int:
        if self.fixed is not None:
            return len({r["clip_id"] for r in self.fixed})
        return len({clip["clip"] for items in self.by_answer.values() for clip, _ in items})


def eval_records(p: Probe, clips: list[dict], n: int, seed: int) -> list[dict]:
    """One question per held-out clip, each answer n/5 times (greedy over clips in order)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    classes = [a for a in DIRECTIONS if allowed(p, a)] if p.data == "render" else list(DIRECTIONS[:2])
    quota, counts, out = n // len(classes), Counter(), []
    for clip in clips:
        objs = [o for o in clip["objects"] if o["clear"] and allowed(p, o["answer"]) and counts[o["answer"]] < quota]
        if not objs:
            continue
        obj = min(objs, key=lambda o: (counts[o["answer"]], rng.random()))
        counts[obj["answer"]] += 1
        out.append(make_record(clip, obj, variant_for(p, rng), rng, p.options))
        if len(out) >= quota * len(classes):
            break
    rng.shuffle(out)  # so that the first records (the curve's subset) are balanced too
    return out


def allowed(p: Probe, answer: str) -> bool:
    return p.answers == "all" or answer in ("to the left", "to the right")


def shuffled(records: list[dict], seed: int) -> list[dict]:
    """The control: each record with another record's clip (frames and Set-of-Marks image)."""
    import numpy as np

    n = len(records)
    perm = np.random.default_rng(seed).permutation(n)
    out = []
    for i, r in enumerate(records):
        j = int(perm[i]) if perm[i] != i else (i + 1) % n
        while records[j]["clip_id"] == r["clip_id"]:
            j = (j + 1) % n
        other = records[j]
        out.append({**r, "frame_paths": other["frame_paths"], "timestamps": other["timestamps"],
                    "som_image": other["som_image"] if r["som_image"] else None})
    return out


# ---------------------------------------------------------------------------------------------- model


def model_config(p: Probe):
    from components.config import ModelConfig, TinyModelConfig, TrainableConfig

    heads = max(4, p.hidden_size // 32)
    tiny = TinyModelConfig(hidden_size=p.hidden_size, num_heads=heads, num_kv_heads=heads // 2,
                           intermediate_size=2 * p.hidden_size, spatial_merge_size=p.merge)
    return ModelConfig(source="tiny", seed=p.seed, tiny=tiny, num_frames=p.num_frames, frame_size=p.frame_size,
                       visual_input=p.visual_input, answer_format="text", time_cue=p.time_cue, cpu_threads=1,
                       trainable=TrainableConfig(vision=p.vision, projector=p.projector, llm="full"))


def candidates(record: dict) -> list[str]:
    """The answers a record is scored over: its options, or all five when none are listed."""
    return record["options"] or list(DIRECTIONS)


def score_options(model, processor, cfg, records: list[dict], batch: int = 16):
    """Per record: the option with the highest log-likelihood of its target (``<answer>..</answer><|im_end|>``)."""
    import torch

    from components.models.inputs import encode_batch

    preds = []
    model.eval()
    with torch.no_grad():
        for s in range(0, len(records), batch):
            chunk = records[s : s + batch]
            variants = [{**r, "answer_text": o} for r in chunk for o in candidates(r)]
            enc = encode_batch(variants, processor, cfg, with_target=True)
            logits = model(**{k: v for k, v in enc.items() if k != "labels"}).logits[:, :-1].float()
            labels = enc["labels"][:, 1:]
            logp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
            total = (logp * (labels != -100)).sum(-1).view(len(chunk), -1)
            for r, row in zip(chunk, total.tolist()):
                preds.append(candidates(r)[max(range(len(row)), key=row.__getitem__)])
    model.train()
    return preds


def accuracy(records: list[dict], preds: list[str]) -> float:
    return sum(p == r["answer_text"] for r, p in zip(records, preds)) / max(len(records), 1)


def visual_stats(model, processor, cfg, records: list[dict]) -> dict:
    """The visual tokens as the LLM receives them (merger output, TPE included) against the text embeddings:
    mean norm, how much they differ between clips, and how much between frames of one clip (the motion)."""
    import torch

    from components.models.inputs import encode_batch

    captured = []
    visual = getattr(model, "visual", None) or model.model.visual
    handle = visual.merger.register_forward_hook(lambda m, a, out: captured.append(out.detach()))
    model.eval()
    with torch.no_grad():
        enc = encode_batch(records, processor, cfg, with_target=True)
        model(**{k: v for k, v in enc.items() if k != "labels"})
    model.train()
    handle.remove()
    tokens = torch.cat(captured).float()  # (records * tokens_per_record, hidden)
    per = tokens.view(len(records), -1, tokens.shape[-1])
    slots = cfg.num_frames if cfg.visual_input == "images" else max(1, cfg.num_frames // 2)
    frames = per.view(len(records), slots, -1, tokens.shape[-1])
    emb = model.get_input_embeddings().weight.float()
    return {
        "visual_norm": tokens.norm(dim=-1).mean().item(),
        "text_norm": emb.norm(dim=-1).mean().item(),
        "across_clips": (per - per.mean(0, keepdim=True)).norm(dim=-1).mean().item(),
        "across_frames": (frames[:, 1:] - frames[:, :-1]).norm(dim=-1).mean().item() if slots > 1 else 0.0,
        "tokens_per_record": per.shape[1],
    }


# ------------------------------------------------------------------------------------------------ run


def patch_inputs(p: Probe) -> None:
    """The diagnostics ``prompt_style`` and ``target``: replace the prompt / target builders of
    ``components.models.inputs`` in this process (``encode_batch`` looks them up at call time)."""
    import components.models.inputs as mi

    originals = patch_inputs.__dict__.setdefault("originals", {
        "prompt_text": mi.prompt_text, "instruction": mi.instruction, "target_text": mi.target_text})
    for key, fn in originals.items():
        setattr(mi, key, fn)
    if p.prompt_style == "short":
        mi.prompt_text = lambda record, time_line=None: "Direction?"
        mi.instruction = lambda record, cfg: ""
    if p.target == "word":
        mi.target_text = lambda record, cfg: WORD[record["answer_text"]]


def run_probe(name: str, p: Probe, args, log) -> dict:
    import numpy as np
    import torch

    from components.models import apply_trainable, build_base_model, load_model, tokenizer_corpus
    from components.models.inputs import encode_batch

    torch.set_num_threads(1)
    torch.manual_seed(p.seed)
    patch_inputs(p)
    root = Path(args.workdir)
    t0 = time.perf_counter()
    train_clips = render_pool(p, "train", p.train_clips, root, log)
    held = render_pool(p, "eval", args.eval_clips, root, log)
    render_s = time.perf_counter() - t0
    sampler = TrainSampler(p, train_clips, seed=p.seed)
    ev = eval_records(p, held, args.eval_records, seed=123)
    ev_shuf = shuffled(ev, seed=321)
    tr_seen = sampler.fixed[: args.train_eval] if sampler.fixed else sampler.batch(args.train_eval)
    tr_shuf = shuffled(tr_seen, seed=322)
    cfg = model_config(p)
    texts_rng = np.random.default_rng(99)
    corpus_records = sampler.batch(600) + ev
    for r in corpus_records[:300]:  # both variants' wording in the tokenizer whatever the prompt setting
        corpus_records.append({**make_record({"clip": r["clip_id"], "frames": r["frames"], "timestamps": r["timestamps"],
                                             "frame_paths": r["frame_paths"], "som": None},
                                            {"answer": r["answer_text"], "token": "<R1>", "object_id": 1,
                                             "label": "red cube"}, "region", texts_rng)})
    base = build_base_model(cfg, tokenizer_corpus(corpus_records, cfg), root / "models" / name)
    model, processor = load_model(base, cfg, for_training=True)
    if p.rope_theta:
        rot = model.model.language_model.rotary_emb
        dim = 2 * rot.inv_freq.numel()
        rot.inv_freq = 1.0 / (p.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    model = apply_trainable(model, cfg)
    from components.models.trainable import part_of

    params = [q for q in model.parameters() if q.requires_grad]
    groups = [{"params": [q for n, q in model.named_parameters() if q.requires_grad and (part_of(n) == "llm") == llm],
               "lr": p.lr * (1.0 if llm else p.visual_lr_mult)} for llm in (True, False)]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=p.lr, weight_decay=0.0)
    warm = int(p.warmup * p.steps)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if p.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, p.steps - warm)))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    log(f"[{name}] {p}\n  train: {sampler.distinct_clips()} distinct clips ({ {a: len(v) for a, v in sampler.by_answer.items()} }), "
        f"eval {len(ev)} records ({dict(Counter(r['answer_text'] for r in ev))}), render/load {render_s:.0f} s")
    stats0 = visual_stats(model, processor, cfg, ev[:32])
    curve, losses, seen = [], [], 0
    start = time.perf_counter()
    eval_s = 0.0
    every = args.eval_every or p.steps
    for step in range(1, p.steps + 1):
        records = sampler.batch(p.batch)
        enc = encode_batch(records, processor, cfg, with_target=True)
        loss = model(**enc).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        seen += len(records)
        losses.append(loss.item())
        if step % every == 0 or step == p.steps:
            e0 = time.perf_counter()
            sub = ev if step == p.steps else ev[: args.curve_records]
            sub_s = ev_shuf if step == p.steps else ev_shuf[: args.curve_records]
            own, ctl = accuracy(sub, score_options(model, processor, cfg, sub)), accuracy(sub_s, score_options(model, processor, cfg, sub_s))
            eval_s += time.perf_counter() - e0
            curve.append({"step": step, "samples": seen, "loss": float(np.mean(losses[-every:])), "acc": own,
                          "shuffled": ctl, "records": len(sub)})
            log(f"  step {step:4d} loss {curve[-1]['loss']:.3f} held-out {own:.3f} shuffled {ctl:.3f} "
                f"({time.perf_counter() - start:.0f} s, load {loadavg()[0]:.2f})")
    train_s = time.perf_counter() - start - eval_s
    preds = score_options(model, processor, cfg, ev)
    preds_shuf = score_options(model, processor, cfg, ev_shuf)
    per_class = {a: accuracy([r for r in ev if r["answer_text"] == a], [q for r, q in zip(ev, preds) if r["answer_text"] == a])
                 for a in DIRECTIONS if any(r["answer_text"] == a for r in ev)}
    tr_own = accuracy(tr_seen, score_options(model, processor, cfg, tr_seen))
    tr_ctl = accuracy(tr_shuf, score_options(model, processor, cfg, tr_shuf))
    stats1 = visual_stats(model, processor, cfg, ev[:32])
    n = len(ev)
    acc, ctl = accuracy(ev, preds), accuracy(ev_shuf, preds_shuf)
    # paired difference over records (own vs shuffled), normal interval
    d = [int(a == r["answer_text"]) - int(b == r["answer_text"]) for r, a, b in zip(ev, preds, preds_shuf)]
    mean_d = sum(d) / n
    se = (sum((x - mean_d) ** 2 for x in d) / max(n - 1, 1) / n) ** 0.5
    result = {
        "name": name, "config": {k: v for k, v in dataclasses.asdict(p).items()},
        "changed": {k: v for k, v in dataclasses.asdict(p).items() if getattr(BASE, k) != v},
        "held_out_acc": acc, "shuffled_acc": ctl, "gain_points": 100 * mean_d,
        "gain_ci95": [100 * (mean_d - 1.96 * se), 100 * (mean_d + 1.96 * se)],
        "per_answer_acc": per_class, "pred_share": {k: v / n for k, v in Counter(preds).most_common()},
        "train_records_acc": tr_own, "train_records_shuffled": tr_ctl,
        "steps": p.steps, "batch": p.batch, "samples_seen": seen, "distinct_train_clips": sampler.distinct_clips(),
        "distinct_train_records": len(sampler.fixed) if sampler.fixed else None,
        "eval_records": n, "train_s": train_s, "eval_s": eval_s, "samples_per_s": seen / max(train_s, 1e-9),
        "visual_before": stats0, "visual_after": stats1, "curve": curve,
        "final_loss": float(np.mean(losses[-20:])), "load": loadavg(),
    }
    log(f"  => {name}: held-out {acc:.3f} vs shuffled {ctl:.3f} ({100 * mean_d:+.1f} points "
        f"[{result['gain_ci95'][0]:+.1f}, {result['gain_ci95'][1]:+.1f}]); train records {tr_own:.3f} vs {tr_ctl:.3f}; "
        f"{seen} samples, {train_s:.0f} s train; preds {result['pred_share']}")
    log(f"     visual tokens before {stats0}\n     after {stats1}")
    return result


# --------------------------------------------------------------------------------------------- report


def chance(config: dict) -> float:
    """Accuracy of a guesser that knows the answer prior and reads the listed options but not the frames."""
    k = 2 if config.get("answers") == "lr" or config.get("data") == "square" else 5
    if not config.get("options", 4):
        return 1 / k
    # the answer plus 3 of the other 4 directions, j of which are other possible answers (hypergeometric)
    return sum(math.comb(k - 1, j) * math.comb(5 - k, 3 - j) / math.comb(4, 3) / (j + 1) for j in range(min(k, 4)))


def write_markdown(results: dict, path: Path) -> None:
    order = [n for n in RUNS if n in results] + [n for n in results if n not in RUNS]
    lines = [
        "# Learning probe: what the tiny model needs to learn motion direction from frames",
        "",
        "`benchmarks/learning_probe.py` (`--list` for the runs, `--help`): a plain AdamW loop (loss on the answer tokens, "
        "grad-norm 1.0, batch 32) around the project's renderer, `build_base_model`, `load_model`, `apply_trainable` and "
        "`encode_batch`. Fresh class-balanced samples every step from the first `train_clips` clips of a pool; held-out "
        "clips of another scene seed, one question each, class-balanced; the answer = the option with the highest "
        "log-likelihood; control = another held-out clip's frames (shuffled video). Chance = a guesser that knows the "
        "answer prior and the listed options. Positive control defaults: "
        + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(BASE).items()) + ".",
        "",
        "| run | changed from the defaults | held-out % | shuffled % | chance % | gain (95% CI) | train-clip own / shuffled | steps | samples | distinct train clips | train s | visual norm after (text 0.23) | visual across-clip spread before -> after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in order:
        r = results[name]
        changed = ", ".join(f"{k}={v}" for k, v in r["changed"].items()) or "-"
        lo, hi = r["gain_ci95"]
        vb, va = r["visual_before"], r["visual_after"]
        clips = r["distinct_train_clips"] if not r.get("distinct_train_records") else \
            f"{r['distinct_train_clips']} ({r['distinct_train_records']} records)"
        lines.append(f"| {name} | {changed} | {100 * r['held_out_acc']:.1f} | {100 * r['shuffled_acc']:.1f} | "
                     f"{100 * chance(r['config']):.1f} | {r['gain_points']:+.1f} [{lo:+.1f}, {hi:+.1f}] | "
                     f"{100 * r['train_records_acc']:.0f} / {100 * r['train_records_shuffled']:.0f} | {r['steps']} | "
                     f"{r['samples_seen']} | {clips} | {r['train_s']:.0f} | {va['visual_norm']:.2f} | "
                     f"{vb['across_clips']:.3f} -> {va['across_clips']:.3f} |")
    lines += ["", ("Learning curves (step: held-out / shuffled %, on the first 100 eval records; runs before the eval "
              "set was shuffled have unbalanced curve subsets, their final numbers use all records):"), ""]
    for name in order:
        r = results[name]
        pts = "; ".join(f"{c['step']}: {100 * c['acc']:.0f}/{100 * c['shuffled']:.0f}" for c in r["curve"])
        lines.append(f"- {name}: {pts}")
    notes = Path(__file__).with_name("learning_probe_notes.md")
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", default=[], help=f"a predefined run (repeatable): {', '.join(RUNS)}")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a Probe field on top of the run (e.g. vision=frozen, lr=3e-4)")
    ap.add_argument("--name", help="result name for a single --run with --set (default: run name + overrides)")
    ap.add_argument("--steps", type=int, help="override every run's steps")
    ap.add_argument("--workdir", default="/tmp/probe", help="pool of rendered clips and the built models")
    ap.add_argument("--eval-clips", type=int, default=1500, help="held-out clips rendered (one question each)")
    ap.add_argument("--eval-records", type=int, default=300)
    ap.add_argument("--curve-records", type=int, default=100, help="records for the intermediate curve points")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--train-eval", type=int, default=100, help="training records scored at the end (memorisation)")
    ap.add_argument("--out", type=Path, default=OUT_JSON)
    ap.add_argument("--list", action="store_true", help="print the predefined runs and exit")
    ap.add_argument("--report", action="store_true", help="only rewrite the markdown from the JSON")
    args = ap.parse_args()
    if args.list:
        for name, change in RUNS.items():
            print(f"{name:16s} {change or '(the positive control)'}")
        return
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if not args.report:
        if not args.run:
            ap.error("give --run NAME (see --list)")
        fields = {f.name: f.type for f in dataclasses.fields(Probe)}
        for run in args.run:
            change = dict(RUNS[run])
            for item in args.set:
                key, value = item.split("=", 1)
                if key not in fields:
                    ap.error(f"unknown field {key}")
                default = getattr(BASE, key)
                change[key] = (tuple(float(x) for x in value.split(",")) if isinstance(default, tuple)
                               else type(default)(value))
            if args.steps:
                change["steps"] = args.steps
            name = args.name or (run + "".join(f"+{s}" for s in args.set))
            p = dataclasses.replace(BASE, **change)
            results[name] = rounded(run_probe(name, p, args, lambda m: print(m, flush=True)))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    write_markdown(results, args.out.with_suffix(".md"))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
