"""Learned stereo / segmenter adapters: a local safetensors folder or a clear refusal; curation uses the
stereo model's disparity when configured."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from components.config import LearnedConfig
from components.curation.clip import curate_clip
from components.curation.learned import LearnedModelError, LearnedStereo, load_model, register_kind


class ShiftStereo(torch.nn.Module):
    """A 'network' whose flow is a constant -d pixels in x: disparity d everywhere."""

    def __init__(self):
        super().__init__()
        self.d = torch.nn.Parameter(torch.tensor(4.0))

    def forward(self, a, b, num_flow_updates=12):
        flow = torch.zeros(1, 2, *a.shape[-2:])
        flow[:, 0] = -self.d
        return [flow]


def _folder(tmp_path, kind="shift", weights=True):
    register_kind("stereo", "shift", lambda manifest, state: _loaded(state))
    folder = tmp_path / "stereo_model"
    folder.mkdir(exist_ok=True)
    (folder / "model.json").write_text(json.dumps({"kind": kind, "weights": "model.safetensors"}))
    if weights:
        save_file({"d": torch.tensor(6.0)}, str(folder / "model.safetensors"))
    return folder


def _loaded(state):
    model = ShiftStereo()
    model.load_state_dict(state)
    return model


def test_a_learned_stereo_folder_gives_disparity(tmp_path):
    stereo = LearnedStereo(_folder(tmp_path))
    d = stereo.disparity(np.zeros((40, 60, 3), np.uint8), np.zeros((40, 60, 3), np.uint8))
    assert d.shape == (40, 60) and np.allclose(d, 6.0)  # the weights' value, not the module's init


@pytest.mark.parametrize("change,message", [
    (lambda f: shutil.rmtree(f), "folder not found"),
    (lambda f: (f / "model.safetensors").unlink(), "not a .safetensors file"),
    (lambda f: (f / "model.json").write_text('{"kind": "sgbm++", "weights": "model.safetensors"}'), "known: "),
    (lambda f: (f / "model.safetensors").write_bytes(b"not safetensors"), "not readable safetensors"),
])
def test_an_unusable_folder_is_refused_clearly(tmp_path, change, message):
    folder = _folder(tmp_path)
    change(folder)
    with pytest.raises(LearnedModelError, match=message) as err:
        load_model("stereo", folder)
    assert str(folder) in str(err.value)


def test_the_shipped_raft_kind_loads_torchvision_weights_from_safetensors(tmp_path):
    from torchvision.models.optical_flow import raft_small

    folder = tmp_path / "raft"
    folder.mkdir()
    save_file(raft_small(weights=None, progress=False).state_dict(), str(folder / "raft.safetensors"))
    (folder / "model.json").write_text(json.dumps({"kind": "raft", "weights": "raft.safetensors", "iterations": 2}))
    d = LearnedStereo(folder).disparity(np.full((60, 90, 3), 90, np.uint8), np.full((60, 90, 3), 90, np.uint8))
    assert d.shape == (60, 90) and d.dtype == np.float32


def test_curation_uses_the_learned_stereo_model(smoke_params, smoke_scenes, tmp_path):
    clip = min(p for p in smoke_scenes.iterdir() if p.is_dir())
    cfg = replace(smoke_params.curation, learned=LearnedConfig(stereo=str(_folder(tmp_path))))
    result = curate_clip(clip, cfg, tmp_path / "out")
    assert result.error is None, result.error
    assert "learned stereo" in result.depth_source and "stereo_model" in result.depth_source
