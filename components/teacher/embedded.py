"""The embedded teacher: a small L4P-shaped 4D perception model trained here on the synthetic clips.

L4P (the teacher 4D-RGPT uses as it is) is a pre-trained video ViT encoder (VideoMAE, 2-frame tubelets)
whose tokens feed light per-task heads for depth, flow, motion and camera rays. This is the same structure
at the project's scale:

  E_4D  per frame, a conv stem over the RGB frame and a cost volume (how well each of 81 shifts of the
        next frame matches each place, as flow networks compute it), down to a ``4h' x 4w'`` feature map;
        each 4x4 block is flattened into the token of its cell of the student's ``h' x w'`` grid (the frames
        of one temporal slot concatenated, as Qwen's temporal patches are); learned space and time position
        embeddings plus a sinusoidal encoding of the slot's time (seconds since the first frame, 4D-RGPT's
        eq. 5); ``layers`` pre-norm transformer blocks over all ``N' h' w'`` tokens; a LayerNorm -> F_4D.
  D_m   per modality, a per-token linear layer to the pixel patch the token covers (for every frame of its
        temporal slot), rearranged into an ``S x S`` map, a residual 3x3 conv refinement that smooths the
        patch seams, plus a learned prior map per frame. Depth is predicted as log-depth (returned in
        metres).

Departures, and why: F_4D lives directly on the student's grid (L4P's is VideoMAE's; ``external.py``
resamples), so the student is distilled token for token. The encoder is trained from scratch on a few
dozen clips, not pre-trained on millions, which needs help to learn at all in a few hundred CPU steps: the
cost volume (tokens 28 pixels wide never see a few pixels of motion; VideoMAE learns that from its
tubelets and its data), variance-preserving stem init, zero-initialised heads starting from the training
mean maps (comments below say what each fixed, measured). It is a weak teacher;
``benchmarks/teacher_quality.py`` measures it against trivial baselines on held-out clips.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from components.config import ModelConfig, TeacherConfig
from components.io import atomic_path, file_digest, write_json
from components.teacher.base import CHANNELS, Grid, Teacher, TeacherError, student_grid
from components.time_encoding import timestamp_encoding

WEIGHTS = "teacher.safetensors"
MANIFEST = "teacher.json"
SUB = 4  # each token is built from a SUB x SUB block of stem features (keeps its layout inside the token)
STEM = 32  # stem channels
REFINE = 16  # hidden channels of the decoders' conv refinement
LOG_DEPTH_RANGE = (-5.0, 7.0)  # log-metres the depth head may return (7 mm .. 1.1 km): keeps exp finite
# Cost volume: on COST_SIDE x COST_SIDE grey frames, shifts of -8..8 pixels in steps of 2 on both axes (up
# to 29% of the width: the sampled frames of a turning camera are that far apart).
COST_SIDE = 28
COST_RADIUS = 8
COST_SHIFTS = tuple(range(-COST_RADIUS, COST_RADIUS + 1, 2))
COST_CHANNELS = len(COST_SHIFTS) ** 2
# The costs become a distribution over shifts (softmax of minus cost / this): which shift matches is then
# explicit in the channels, rather than a small dip in 81 similar numbers. In units of normalised grey.
COST_TEMPERATURE = 0.1
TIME_SCALE = 100.0  # T of the timestamp encoding, seconds: longer than any clip (as model.tpe_max_timescale)


@dataclass(frozen=True)
class Architecture:
    """Everything that fixes the embedded teacher's shapes; stored in teacher.json to rebuild it."""

    grid: Grid
    num_frames: int  # N
    frame_size: int  # input frames are resized to this square
    channels: int
    layers: int
    heads: int
    map_size: int
    modalities: tuple[str, ...] = field(default_factory=lambda: tuple(CHANNELS))

    @classmethod
    def from_configs(cls, cfg: TeacherConfig, model_cfg: ModelConfig) -> Architecture:
        return cls(student_grid(model_cfg), model_cfg.num_frames, model_cfg.frame_size, cfg.channels, cfg.layers,
                   cfg.heads, cfg.map_size, tuple(cfg.modalities))

    @classmethod
    def from_json(cls, raw: dict) -> Architecture:
        return cls(**{**raw, "grid": Grid(**raw["grid"]), "modalities": tuple(raw["modalities"])})


def cost_volume(frames: torch.Tensor) -> torch.Tensor:
    """(B, N, 3, H, W) -> (B*N, COST_CHANNELS + 2, COST_SIDE, COST_SIDE): for each frame, a distribution
    over a window of shifts of the next frame (the previous one for the last frame) by how well each
    matches (local mean absolute difference of grey levels), and its expectation, a coarse flow."""
    b, n = frames.shape[:2]
    grey = F.interpolate(frames.mean(2), size=(COST_SIDE, COST_SIDE), mode="area")  # (B, N, side, side)
    if n == 1:
        return torch.zeros(b, COST_CHANNELS + 2, COST_SIDE, COST_SIDE, device=frames.device)
    other = torch.cat([grey[:, 1:], grey[:, -2:-1]], dim=1)  # next frame; the last frame looks back
    ref = grey.flatten(0, 1)[:, None]
    other = F.pad(other.flatten(0, 1)[:, None], [COST_RADIUS] * 4, mode="replicate")
    r, side = COST_RADIUS, COST_SIDE
    costs = [(ref - other[..., r + dy:r + dy + side, r + dx:r + dx + side]).abs()
             for dy in COST_SHIFTS for dx in COST_SHIFTS]
    cost = F.avg_pool2d(torch.cat(costs, dim=1), 3, stride=1, padding=1, count_include_pad=False)
    prob = torch.softmax(-cost / COST_TEMPERATURE, dim=1)
    shifts = torch.tensor([(dx, dy) for dy in COST_SHIFTS for dx in COST_SHIFTS], dtype=prob.dtype) / r
    coarse = torch.einsum("bkhw,kc->bchw", prob, shifts.to(prob.device))  # in units of the search radius
    return torch.cat([prob * COST_CHANNELS, coarse], dim=1)  # x COST_CHANNELS: unit mean, like the image


class MapHead(nn.Module):
    """D_m: tokens (B, N', h', w', c') -> maps (B, N, C, S, S)."""

    def __init__(self, arch: Architecture, out_channels: int):
        super().__init__()
        g = arch.grid
        self.per_slot = arch.num_frames // g.frames
        self.patch = math.ceil(arch.map_size / min(g.height, g.width))
        self.out_channels, self.map_size = out_channels, arch.map_size
        self.linear = nn.Linear(arch.channels, self.per_slot * out_channels * self.patch**2)
        self.refine = nn.Sequential(nn.Conv2d(out_channels, REFINE, 3, padding=1), nn.GELU(),
                                    nn.Conv2d(REFINE, out_channels, 3, padding=1))
        # Zero-initialised outputs: the head starts at its prior map (below) and grows the token-dependent
        # part. With random outputs, the fastest first fix was to make every token the same (measured: the
        # latent's spread across clips fell 40x in 25 steps), then a long plateau to undo it.
        for layer in (self.linear, self.refine[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        # A learned map per frame added to every prediction: the part of a modality that is the same in
        # every clip (the ground plane's depth, the rays of a fixed lens), so that the tokens only carry
        # what differs. Training initialises it to the training mean (``EmbeddedTeacher.set_priors``).
        self.prior = nn.Parameter(torch.zeros(arch.num_frames, out_channels, arch.map_size, arch.map_size))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        b, t, h, w, _ = latent.shape
        k, c, p = self.per_slot, self.out_channels, self.patch
        x = self.linear(latent).view(b, t, h, w, k, c, p, p)
        x = x.permute(0, 1, 4, 5, 2, 6, 3, 7).reshape(b * t * k, c, h * p, w * p)
        if x.shape[-1] != self.map_size or x.shape[-2] != self.map_size:
            x = F.interpolate(x, size=(self.map_size, self.map_size), mode="bilinear", align_corners=False)
        x = x + self.refine(x)
        return x.view(b, t * k, c, self.map_size, self.map_size) + self.prior


class EmbeddedTeacher(Teacher):
    """E_4D + one D_m per modality, on the student's grid (see the module docstring)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        g = arch.grid
        if arch.num_frames % g.frames:
            raise TeacherError(f"{arch.num_frames} frames do not split into {g.frames} temporal slots")
        self.arch = arch
        self.grid, self.channels, self.map_size, self.modalities = g, arch.channels, arch.map_size, arch.modalities
        self.stem_in = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.GELU())
        self.stem = nn.Sequential(nn.Conv2d(16 + COST_CHANNELS + 2, STEM, 3, stride=2, padding=1), nn.GELU(),
                                  nn.Conv2d(STEM, STEM, 3, padding=1), nn.GELU())
        for conv in (m for m in [*self.stem_in, *self.stem] if isinstance(m, nn.Conv2d)):
            # Variance-preserving: with PyTorch's default init the image signal shrinks ~3x per layer, and
            # the tokens came out the same for every clip (measured: 0.1% of their spread), a plateau of
            # hundreds of steps before the encoder looked at its input.
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        per_slot = arch.num_frames // g.frames
        self.embed = nn.Sequential(nn.Linear(per_slot * STEM * SUB * SUB, arch.channels), nn.LayerNorm(arch.channels))
        self.pos_time = nn.Parameter(torch.randn(g.frames, 1, arch.channels) * 0.02)
        self.pos_space = nn.Parameter(torch.randn(1, g.height * g.width, arch.channels) * 0.02)
        self.time_proj = nn.Linear(arch.channels, arch.channels)
        self.blocks = nn.Sequential(*[
            nn.TransformerEncoderLayer(arch.channels, arch.heads, 4 * arch.channels, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(arch.layers)])
        self.norm = nn.LayerNorm(arch.channels)
        self.heads = nn.ModuleDict({m: MapHead(arch, CHANNELS[m]) for m in arch.modalities})

    @classmethod
    def from_configs(cls, cfg: TeacherConfig, model_cfg: ModelConfig) -> EmbeddedTeacher:
        return cls(Architecture.from_configs(cfg, model_cfg))

    def encode(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        g, a = self.grid, self.arch
        if frames.ndim != 5 or frames.shape[1] != a.num_frames or frames.shape[2] != 3:
            raise TeacherError(f"frames must be (B, {a.num_frames}, 3, H, W), got {tuple(frames.shape)}")
        b, n = frames.shape[:2]
        x = frames.reshape(b * n, 3, *frames.shape[-2:])
        if x.shape[-1] != a.frame_size or x.shape[-2] != a.frame_size:
            x = F.interpolate(x, size=(a.frame_size, a.frame_size), mode="bilinear", antialias=True,
                              align_corners=False)
        x = (x - 0.5) / 0.25
        cost = cost_volume(x.view(b, n, 3, a.frame_size, a.frame_size))
        x = self.stem_in(x)
        if cost.shape[-2:] != x.shape[-2:]:
            cost = F.interpolate(cost, size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = self.stem(torch.cat([x, cost], dim=1))
        x = F.adaptive_avg_pool2d(x, (g.height * SUB, g.width * SUB))
        # (B*N, C, h' SUB, w' SUB) -> per slot and cell, the SUB x SUB blocks of its frames, flattened
        k = n // g.frames
        x = x.view(b, g.frames, k, STEM, g.height, SUB, g.width, SUB).permute(0, 1, 4, 6, 2, 3, 5, 7)
        tokens = self.embed(x.reshape(b, g.frames, g.height * g.width, -1))
        rel = (timestamps - timestamps[:, :1]).view(b, g.frames, k).mean(-1)
        when = self.time_proj(timestamp_encoding(rel, a.channels, TIME_SCALE))[:, :, None]
        tokens = tokens + self.pos_time + self.pos_space + when
        latent = self.norm(self.blocks(tokens.reshape(b, g.tokens, a.channels)))
        return latent.view(b, g.frames, g.height, g.width, a.channels)

    def decode(self, latent: torch.Tensor, modality: str) -> torch.Tensor:
        if modality not in self.heads:
            raise TeacherError(f"unknown modality {modality!r}: this teacher decodes {list(self.modalities)}")
        g = self.grid
        expected = (g.frames, g.height, g.width, self.channels)
        if latent.ndim != 5 or tuple(latent.shape[1:]) != expected:
            raise TeacherError(f"latent must be (B, {', '.join(map(str, expected))}), got {tuple(latent.shape)}")
        out = self.heads[modality](latent)
        if modality == "depth":
            return torch.exp(out.clamp(*LOG_DEPTH_RANGE))
        return out

    @torch.no_grad()
    def set_priors(self, priors: dict[str, torch.Tensor]) -> None:
        """Set each head's prior map (N, C_m, S, S) in its output space: log-metres for depth, a logit for
        motion, as returned otherwise."""
        for m, prior in priors.items():
            self.heads[m].prior.copy_(prior.log() if m == "depth" else prior)

    def save(self, out: str | Path, *, metrics: dict | None = None, extra: dict | None = None) -> Path:
        """Write ``out/teacher.safetensors`` then ``out/teacher.json`` (the manifest, with the weights'
        digest: a manifest never describes weights it was not written with), each atomically."""
        out = Path(out)
        with atomic_path(out / WEIGHTS) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(tmp))
        write_json(out / MANIFEST, {
            "kind": "embedded", "weights": WEIGHTS, "weights_sha256": file_digest(out / WEIGHTS),
            "architecture": {**asdict(self.arch), "modalities": list(self.arch.modalities)},
            "grid": asdict(self.grid), "channels": self.channels, "map_size": self.map_size,
            "modalities": list(self.modalities), "metrics": metrics or {},
            **(extra or {}),
        })
        return out

    @classmethod
    def load(cls, folder: str | Path) -> EmbeddedTeacher:
        """Rebuild from ``folder/teacher.json`` and load ``teacher.safetensors`` (strict)."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest.get("kind") != "embedded":
            raise TeacherError(f"{folder / MANIFEST}: kind {manifest.get('kind')!r} is not an embedded teacher")
        weights = folder / manifest.get("weights", WEIGHTS)
        if not weights.is_file():
            raise TeacherError(f"{weights} is missing: re-train the teacher into {folder}")
        if manifest.get("weights_sha256") and file_digest(weights) != manifest["weights_sha256"]:
            raise TeacherError(f"{weights} does not match {folder / MANIFEST} (digest differs): a write was "
                               "interrupted or the files were mixed; re-train the teacher into this folder")
        teacher = cls(Architecture.from_json(manifest["architecture"]))
        teacher.load_state_dict(load_file(str(weights)))
        return teacher


def read_manifest(folder: Path, *, how: str = "train the embedded teacher into it (train_teacher)") -> dict:
    """``folder/teacher.json``; errors say what is missing and ``how`` to provide it."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise TeacherError(f"teacher folder {folder} does not exist: {how}")
    if not path.is_file():
        raise TeacherError(f"{path} is missing: a teacher folder holds teacher.json (kind, weights, modalities, ...) "
                           f"beside its .safetensors weights; {how}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TeacherError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise TeacherError(f"{path}: expected a JSON object")
    return manifest
