"""Timestamp Positional Encoding (4D-RGPT eq. 5): the frame's time, added to its visual features.

``p(t)[2i] = sin(t / T^(2i/D))``, ``p(t)[2i+1] = cos(t / T^(2i/D))``, with ``D`` the vision tower's hidden
size and ``T`` the maximum timescale (``model.tpe_max_timescale``), added to every patch feature of a frame
after the vision encoder ``E_V`` and before the projector ``E_P`` (Qwen-VL's ``visual.merger``). It has no
parameters, so a TPE model has exactly the base architecture's weights.

How the timestamps reach the vision tower: every trainer (ours, TRL's ``SFTTrainer`` and ``GRPOTrainer``)
passes the model ``pixel_values`` and ``image_grid_thw`` and nothing else per image; TRL's GRPO loss drops any
extra key. So the timestamp travels *inside* ``pixel_values``: frames carry it in ``PIL.Image.info``
(``stamp``), the image processor appends it as one extra column of the patch rows
(``enable_timestamps``), and a pre-hook on the vision tower strips that column before the patch embedding
and adds ``p(t)`` in front of the merger (``install_tpe``). Slicing ``pixel_values`` by image (as TRL does)
keeps each row's timestamp with it.

Departures: the paper's video path encodes per frame; here frames are images (one temporal slot each),
so ``time_cue: tpe`` needs ``visual_input: images``. Timestamps are seconds from the first sampled frame.
``model.tpe_scale`` multiplies ``p(t)`` (the paper: 1): ``p(t)`` has norm ``sqrt(D/2)`` whatever the
features' norm: 5.7 against patch features of norm 2.5-2.7 in the tiny model (D = 64); a 7B tower's
(D = 1280: norm 25) were not measured here (no weights; docs/learning.md).
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn
from transformers.image_utils import make_flat_list_of_images

from components.time_encoding import timestamp_encoding

TIME_KEY = "mllm4d_timestamp"


def stamp(image: Image.Image, seconds: float) -> Image.Image:
    """A copy of ``image`` carrying its timestamp (frames are cached and shared: never mutate them)."""
    out = image.copy()
    out.info[TIME_KEY] = float(seconds)
    return out


def _timestamped_call(self, images, *args, **kwargs):
    """The image processor's ``__call__`` plus one trailing column: each patch row's frame timestamp."""
    flat = make_flat_list_of_images(images)
    missing = [i for i, im in enumerate(flat) if TIME_KEY not in getattr(im, "info", {})]
    if missing:
        raise ValueError(f"time_cue 'tpe': images {missing[:5]} carry no timestamp; build frames with "
                         "components.models.inputs.frames_for (it stamps them)")
    out = super(type(self), self).__call__(images, *args, **kwargs)
    rows = out["image_grid_thw"].prod(dim=-1).tolist()
    times = torch.cat([torch.full((n,), im.info[TIME_KEY]) for n, im in zip(rows, flat, strict=True)])
    pixels = out["pixel_values"]
    out["pixel_values"] = torch.cat([pixels, times[:, None].to(pixels.dtype)], dim=1)
    return out


def _base_to_dict(self) -> dict:
    """Save as the base class, so the saved processor loads anywhere without this module."""
    data = super(type(self), self).to_dict()
    data["image_processor_type"] = type(self).__mro__[1].__name__
    return data


_CLASSES: dict[type, type] = {}


def enable_timestamps(processor) -> None:
    """Make ``processor``'s image processor append frame timestamps to ``pixel_values`` (in place)."""
    image_processor = processor.image_processor
    base = type(image_processor)
    if base in _CLASSES.values():
        return
    if base not in _CLASSES:
        _CLASSES[base] = type(f"Timestamped{base.__name__}", (base,),
                              {"__call__": _timestamped_call, "to_dict": _base_to_dict})
    image_processor.__class__ = _CLASSES[base]


class TimestampEncoding(nn.Module):
    """The hooks' state: the patch timestamps of the current vision forward. No parameters."""

    def __init__(self, dim: int, patch_width: int, max_timescale: float, scale: float = 1.0) -> None:
        super().__init__()
        self.dim, self.patch_width, self.max_timescale, self.scale = dim, patch_width, max_timescale, scale
        self._times: torch.Tensor | None = None

    def split(self, module: nn.Module, args: tuple, kwargs: dict):
        """Vision tower pre-hook: strip the timestamp column from ``pixel_values``."""
        pixels = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        if pixels.shape[-1] != self.patch_width + 1:
            raise ValueError(f"this model uses TPE: pixel_values need {self.patch_width + 1} columns (patch + "
                             f"timestamp), got {pixels.shape[-1]}; load the processor with components.models.load_model")
        self._times = pixels[:, -1].float()
        pixels = pixels[:, :-1]
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": pixels}
        return (pixels, *args[1:]), kwargs

    def add(self, module: nn.Module, args: tuple):
        """Merger pre-hook: add ``p(t)`` to each patch feature. The merger sees patches in window order,
        but Qwen-VL's windows never cross a temporal slot and a slot has one timestamp, so row order is safe."""
        hidden = args[0]
        if self._times is None or len(self._times) != hidden.shape[0]:
            raise RuntimeError("TPE: the merger saw patches the vision tower's pre-hook did not stamp")
        encoding = timestamp_encoding(self._times.to(hidden.device), self.dim, self.max_timescale)
        hidden = hidden + (self.scale * encoding).to(hidden.dtype)
        self._times = None
        return (hidden, *args[1:])


def install_tpe(model: nn.Module, max_timescale: float, scale: float = 1.0) -> TimestampEncoding:
    """Hook TPE into a Qwen-VL model's vision tower (``model.visual`` / ``model.model.visual``); ``scale``
    multiplies ``p(t)`` (``model.tpe_scale``; 1 is eq. 5)."""
    visual = getattr(model, "visual", None) or model.model.visual
    vcfg = visual.config
    patch_width = vcfg.in_channels * vcfg.temporal_patch_size * vcfg.patch_size**2
    tpe = TimestampEncoding(vcfg.hidden_size, patch_width, max_timescale, scale)
    visual.register_forward_pre_hook(tpe.split, with_kwargs=True)
    visual.merger.register_forward_pre_hook(tpe.add)
    return tpe
