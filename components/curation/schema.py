"""The QA record contract (``DESIGN.md``): every field that training, GRPO and evaluation read.

One record per line of ``<split>.jsonl``. Each question exists in two phrasings sharing a ``qid``:
``prompt_variant="name"`` ("the red cube") and ``prompt_variant="region"`` ("<R1>", with the object's
first-frame box and mask in ``regions`` and a Set-of-Marks image in ``som_image``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from components.io import read_jsonl

SPLITS: Final = ("sft", "rft", "bench")
ANSWER_TYPES: Final = ("mc", "numeric")
PROMPT_VARIANTS: Final = ("name", "region")
LETTERS: Final = "ABCDE"

# The categories, after R4D-Bench (static: DM, SR; dynamic: T, R, C, FP, SA, DP), STI-Bench / MLLM-4D
# (object-camera distance, ego-motion) and VLM4D (translational / rotational motion).
STATIC_CATEGORIES: Final = ("dimension", "spatial_relation")
DYNAMIC_CATEGORIES: Final = (
    "translational",
    "rotational",
    "speed_acceleration",
    "displacement_path_length",
    "object_camera_distance",
    "ego_motion",
    "counting",
    "false_positive",
)
CATEGORIES: Final = STATIC_CATEGORIES + DYNAMIC_CATEGORIES

# field -> (python types allowed, nullable). The gate checks these; the writers produce them.
RECORD_FIELDS: Final[dict[str, tuple[tuple[type, ...], bool]]] = {
    "id": ((str,), False),
    "qid": ((str,), False),
    "clip_id": ((str,), False),
    "split": ((str,), False),
    "category": ((str,), False),
    "answer_type": ((str,), False),
    "prompt_variant": ((str,), False),
    "question": ((str,), False),
    "options": ((list,), False),  # option texts, 4-5 for mc, [] for numeric
    "answer": ((str, int, float), False),  # option letter for mc, number for numeric
    "answer_text": ((str,), False),  # the option text for mc, the number as text for numeric
    "answer_value": ((int, float), True),  # the underlying quantity, when there is one
    "unit": ((str,), True),
    "frames": ((list,), False),  # sampled frame indices
    "timestamps": ((list,), False),  # their times in seconds
    "frame_paths": ((list,), False),  # left-camera PNGs of the sampled frames
    "regions": ((list,), False),  # [{token, object_id, label, box [x0,y0,x1,y1], mask_rle {size, counts}}]
    "som_image": ((str,), True),  # Set-of-Marks image of the first sampled frame, when regions exist
    "cot": ((str,), False),  # ST-CoT: <thinking>...Spatial State...</thinking><answer>...</answer>
    "solution": ((dict,), False),  # {answer, camera_center [[x,y,z] initial, final], object_center ...}
    "provenance": ((dict,), False),  # {depth_source, pose_source, gt_answer, agrees_with_gt, ...}
}


def read_records(path: Path, *, split: str) -> list[dict]:
    """A split's records, checked against the contract before any compute is spent."""
    if not path.is_file():
        raise FileNotFoundError(f"{split} records not found: {path}")
    records = read_jsonl(path)
    if not records:
        raise ValueError(f"{path}: no records in the {split} split")
    for i, r in enumerate(records, 1):
        unknown, missing = set(r) - set(RECORD_FIELDS), set(RECORD_FIELDS) - set(r)
        if unknown or missing:
            raise ValueError(f"{path}:{i}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}")
    return records
