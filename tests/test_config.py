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


# The catalogue of config edge cases (issue 9, item 8): one test per case.


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_non_finite_float_is_refused_naming_the_key(value):
    with pytest.raises(ParamsError, match=r"curation\.splits\.sft must be a finite number"):
        load_params(ROOT / "params.yaml", [f"curation.splits.sft={value}"])


def test_non_finite_float_in_a_params_file_names_file_and_key(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("sft:\n  learning_rate: .nan\n")
    with pytest.raises(ParamsError, match=r"p\.yaml: sft\.learning_rate must be a finite number"):
        load_params(bad)


@pytest.mark.parametrize("value, expected", [("1e-3", 1e-3), ("5E-4", 5e-4), ("2e+0", 2.0), (".5", 0.5)])
def test_exponent_floats_parse_as_yaml_1_2_numbers_in_overrides(value, expected):
    assert load_params(ROOT / "params.yaml", [f"sft.learning_rate={value}"]).sft.learning_rate == expected


def test_exponent_floats_parse_as_yaml_1_2_numbers_in_params_files(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("sft:\n  learning_rate: 1e-3\ngrpo:\n  beta: 1E-3\n")
    params = load_params(path)
    assert params.sft.learning_rate == 1e-3 and params.grpo.beta == 1e-3


def test_yaml_1_2_ints_and_booleans(tmp_path):
    # YAML 1.1 reads 010 as octal 8 and "yes" as True; YAML 1.2 (and DVC) read ten and a string.
    params = load_params(ROOT / "params.yaml", ["sft.max_steps=010"])
    assert params.sft.max_steps == 10
    with pytest.raises(ParamsError, match="sft.gradient_checkpointing must be bool, got 'yes'"):
        load_params(ROOT / "params.yaml", ["sft.gradient_checkpointing=yes"])


@pytest.mark.parametrize("override", ["sft.max_steps=[1", "sft.max_steps={a: 1", "sft.max_steps='x"])
def test_malformed_override_value_is_a_one_line_error_naming_it(override):
    with pytest.raises(ParamsError) as info:
        load_params(ROOT / "params.yaml", [override])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"override {override!r}") and "not valid YAML" in message


def test_launch_keeps_the_embedded_default_in_process_and_checks_its_fields():
    """``launch`` (the training flow under ``accelerate launch``): off in ``params.yaml``, so ``make run`` trains in
    the flow's process; on with more than one process or an accelerate config; bad values name the key."""
    assert not load_params(ROOT / "params.yaml").launch.launched
    assert load_params(ROOT / "params.yaml", ["launch.processes=2"]).launch.launched
    assert load_params(ROOT / "params.yaml", ["launch.accelerate_config=infra/accelerate.yaml"]).launch.launched
    with pytest.raises(ParamsError, match=r"launch\.processes must be >= 1"):
        load_params(ROOT / "params.yaml", ["launch.processes=0"])
    with pytest.raises(ParamsError, match=r"launch\.accelerate_config must be an accelerate config file"):
        load_params(ROOT / "params.yaml", ["launch.accelerate_config=infra/deepspeed"])
    with pytest.raises(ParamsError, match=r"launch\.main_process_port must be a TCP port"):
        load_params(ROOT / "params.yaml", ["launch.main_process_port=70000"])
