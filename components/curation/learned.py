"""Learned perception models where a user has their weights: a stereo network and an instance segmenter.

MLLM-4D and 4D-RGPT curate with learned models (a stereo network for depth; GroundingDINO + SAM2 for
objects). None can be downloaded here, so the classical path (SGBM, motion and 3D-blob discovery) is the
default and this module is the seam for a local weights folder, like the teacher's external adapter:

    <folder>/model.json         {"kind": "<a name in KINDS[task]>", "weights": "<file>.safetensors", ...}
    <folder>/<file>.safetensors

Weights are read with safetensors only (no pickle, no ``trust_remote_code``, nothing downloaded); a missing
folder, manifest, kind or weights file is a ``LearnedModelError`` that says what to put there.

Shipped kinds, built from torchvision's architectures (no weights inside torchvision are used):

- stereo ``raft``: torchvision's RAFT (``raft_small`` / ``raft_large`` by ``"size"``) as a stereo matcher: on
  a rectified pair the flow from left to right is horizontal, and the disparity is minus its x component
  (RAFT-Stereo's observation); convert torchvision's checkpoint with ``safetensors.torch.save_file``.
- segmenter ``maskrcnn``: torchvision's Mask R-CNN (ResNet-50 FPN), per-frame instance masks above
  ``"score"`` with their COCO class names.

``register_kind(task, name, builder)`` adds another family (``builder(manifest, state_dict) -> nn.Module``).
Curation uses the stereo model for every frame when ``curation.learned.stereo`` names a folder. The
segmenter's per-frame masks are not yet joined to discovery's tracks over time (the next step).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

Builder = Callable[[dict, dict[str, torch.Tensor]], torch.nn.Module]
HOW = ("put model.json (its kind, weights file and options) beside the weights as .safetensors (convert a "
       "PyTorch checkpoint with safetensors.torch.save_file); nothing is downloaded")


class LearnedModelError(ValueError):
    """A learned model folder cannot be used; the message names the folder and what is missing."""


def _raft(manifest: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    from torchvision.models.optical_flow import raft_large, raft_small

    build = {"small": raft_small, "large": raft_large}[manifest.get("size", "small")]
    model = build(weights=None, progress=False)
    model.load_state_dict(state)
    return model


def _maskrcnn(manifest: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=int(manifest.get("classes", 91)))
    model.load_state_dict(state)
    return model


KINDS: dict[str, dict[str, Builder]] = {"stereo": {"raft": _raft}, "segmenter": {"maskrcnn": _maskrcnn}}


def register_kind(task: str, name: str, builder: Builder) -> None:
    """Teach the adapter a model family for ``task`` ("stereo" or "segmenter")."""
    KINDS[task][name] = builder


def load_model(task: str, folder: str | Path) -> tuple[torch.nn.Module, dict]:
    """The model of ``folder`` for ``task``, in eval mode, and its manifest; a clear error when unusable."""
    folder = Path(folder)
    where = f"curation.learned.{task}: {folder}"
    manifest_path = folder / "model.json"
    if not manifest_path.is_file():
        raise LearnedModelError(f"{where}: no model.json ({'folder not found' if not folder.is_dir() else 'missing'}); "
                                f"{HOW}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise LearnedModelError(f"{where}/model.json: not valid JSON ({exc})") from None
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if kind not in KINDS[task]:
        raise LearnedModelError(f"{where}/model.json: kind {kind!r} is not a {task} kind; known: "
                                f"{', '.join(sorted(KINDS[task]))} (or register_kind)")
    weights = folder / str(manifest.get("weights", ""))
    if not manifest.get("weights") or not weights.is_file() or weights.suffix != ".safetensors":
        raise LearnedModelError(f"{where}: weights {manifest.get('weights')!r} is not a .safetensors file there; {HOW}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise LearnedModelError(f"{where}: {weights.name} is not readable safetensors ({exc})") from None
    try:
        model = KINDS[task][kind](manifest, state)
    except (RuntimeError, KeyError, ValueError) as exc:  # load_state_dict: missing or mis-shaped tensors
        raise LearnedModelError(f"{where}: the weights do not fit the {kind} model ({exc})") from None
    return model.eval(), manifest


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0


class LearnedStereo:
    """``disparity(left, right)`` like ``estimate_disparity``: H x W float32 pixels of the left image."""

    def __init__(self, folder: str | Path):
        self.model, self.manifest = load_model("stereo", folder)

    @torch.no_grad()
    def disparity(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        h, w = left.shape[:2]
        # RAFT needs sides divisible by 8 (and >= 128): pad at the bottom-right, crop after.
        ph, pw = -(-max(h, 128) // 8) * 8 - h, -(-max(w, 128) // 8) * 8 - w
        pad = ((0, ph), (0, pw), (0, 0))
        a, b = (_tensor(np.pad(x, pad, mode="edge")) * 2 - 1 for x in (left, right))
        flow = self.model(a, b, num_flow_updates=int(self.manifest.get("iterations", 12)))[-1]
        disparity = -flow[0, 0, :h, :w].numpy().astype(np.float32)
        disparity[disparity <= 0] = np.nan  # a point in front of the cameras has a positive disparity
        return disparity


@functools.cache
def learned_stereo(folder: str) -> LearnedStereo:
    """One loaded stereo model per folder and process (curation asks for it once per clip)."""
    return LearnedStereo(folder)


class LearnedSegmenter:
    """``instances(frame)``: H x W uint8 instance ids (0 background) and {id: class name} above the score."""

    def __init__(self, folder: str | Path):
        self.model, self.manifest = load_model("segmenter", folder)
        self.names = self.manifest.get("class_names") or {}

    @torch.no_grad()
    def instances(self, frame: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
        out = self.model([_tensor(frame)[0]])[0]
        keep = (out["scores"] >= float(self.manifest.get("score", 0.5))).nonzero().flatten()[:255]
        ids = np.zeros(frame.shape[:2], np.uint8)
        names: dict[int, str] = {}
        for k, i in enumerate(keep.tolist(), 1):  # highest score first: later masks do not overwrite it
            mask = (out["masks"][i, 0] >= 0.5).numpy() & (ids == 0)
            ids[mask] = k
            names[k] = str(self.names.get(str(int(out["labels"][i])), int(out["labels"][i])))
        return ids, names
