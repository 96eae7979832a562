"""Every shipped params file loads; bad params fail with the file and the key named."""

from pathlib import Path

import pytest

from components.config import Params, ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [ROOT / "params.yaml", *sorted((ROOT / "presets").glob("*.yaml"))]


def test_presets_exist():
    assert {p.stem for p in SHIPPED} >= {"params", "smoke", "small", "paper"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_params_file_loads(path):
    params = load_params(path)
    assert isinstance(params, Params)


def test_overrides_apply_and_keep_types(tmp_path):
    params = load_params(ROOT / "params.yaml", ["scenes.num_clips=3", "curation.stereo.max_disparity=32"])
    assert params.scenes.num_clips == 3 and params.curation.stereo.max_disparity == 32
    assert isinstance(params.scenes.fps, float)


def test_unknown_key_names_file_and_key(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("scenes:\n  num_clipz: 3\n")
    with pytest.raises(ParamsError, match=r"p\.yaml.*scenes\.num_clipz.*valid keys"):
        load_params(bad)


def test_unknown_section_and_override(tmp_path):
    with pytest.raises(ParamsError, match="unknown key.*sft_typo"):
        load_params(ROOT / "params.yaml", ["sft_typo.lr=1"])


def test_wrong_type_is_an_error(tmp_path):
    with pytest.raises(ParamsError, match="scenes.num_clips must be int"):
        load_params(ROOT / "params.yaml", ["scenes.num_clips=many"])


def test_cross_field_checks(tmp_path):
    with pytest.raises(ParamsError, match="sum to 1"):
        load_params(ROOT / "params.yaml", ["curation.splits.sft=0.9"])
    with pytest.raises(ParamsError, match="baseline_m"):
        load_params(ROOT / "params.yaml", ["scenes.baseline_m=0"])


def test_missing_file():
    with pytest.raises(ParamsError, match="not found"):
        load_params("nope.yaml")
