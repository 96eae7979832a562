"""Spatiotemporal Chain-of-Thought (ST-CoT) in MLLM-4D's format, and its parser.

    <thinking>
    Spatial State (world = the camera at the first frame; x right, y down, z forward; metres):
    Initial frame (frame 0, t=0.00 s): Camera Center: [0.00, 0.00, 0.00]; Object Center: [1.20, 0.85, 6.30]
    Final frame (frame 15, t=1.88 s): Camera Center: [0.00, 0.00, 1.50]; Object Center: [-0.40, 0.85, 6.10]
    Temporal cues: 8 frames sampled over 1.88 s.
    Computation: ...
    So the answer is: ...
    </thinking>
    <answer>B</answer>

The GRPO rewards read the same ``Camera Center: [..]`` / ``Object Center: [..]`` patterns (in order:
initial then final), so ``parse_cot`` here is the single definition of the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_VEC = r"\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]"
CAMERA_RE = re.compile(r"Camera Center:\s*" + _VEC)
OBJECT_RE = re.compile(r"Object Center:\s*" + _VEC)
COT_RE = re.compile(r"^\s*<thinking>(?P<thinking>.*?)</thinking>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.DOTALL)


def vec_text(v: np.ndarray | list[float]) -> str:
    return "[" + ", ".join(f"{float(x):.2f}" for x in v) + "]"


def render_cot(
    *,
    frames: list[int],
    timestamps: list[float],
    camera_centers: list[list[float]],
    object_centers: list[list[float]] | None,
    computation: str,
    conclusion: str,
    answer: str,
    reference: tuple[str, list[float]] | None = None,
) -> str:
    lines = ["<thinking>", "Spatial State (world = the camera at the first frame; x right, y down, z forward; metres):"]
    for i, (name, f, t) in enumerate((("Initial", frames[0], timestamps[0]), ("Final", frames[-1], timestamps[-1]))):
        state = f"{name} frame (frame {f}, t={t:.2f} s): Camera Center: {vec_text(camera_centers[i])}"
        if object_centers is not None:
            state += f"; Object Center: {vec_text(object_centers[i])}"
        lines.append(state)
    if reference is not None:
        lines.append(f"Reference object {reference[0]} at the initial frame: center {vec_text(reference[1])}")
    lines.append(f"Temporal cues: {len(frames)} frames sampled over {timestamps[-1] - timestamps[0]:.2f} s.")
    lines.append(f"Computation: {computation}.")
    lines.append(f"So the answer is: {conclusion}.")
    lines.append("</thinking>")
    lines.append(f"<answer>{answer}</answer>")
    return "\n".join(lines)


@dataclass(frozen=True)
class ParsedCot:
    thinking: str
    answer: str
    camera_centers: list[list[float]]
    object_centers: list[list[float]]


def parse_cot(text: str) -> ParsedCot | None:
    """The parts of an ST-CoT text, or None when the tags are missing or out of order."""
    match = COT_RE.match(text)
    if match is None:
        return None
    thinking = match.group("thinking")
    return ParsedCot(
        thinking=thinking,
        answer=match.group("answer").strip(),
        camera_centers=[[float(x) for x in m] for m in CAMERA_RE.findall(thinking)],
        object_centers=[[float(x) for x in m] for m in OBJECT_RE.findall(thinking)],
    )
