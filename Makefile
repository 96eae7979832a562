# One command each way on a fresh machine: `make run` (set-up + the main job on the embedded default)
# and `make test` (set-up + the test suite). Set-up is idempotent: a stamp file tracks pyproject.toml.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PARAMS ?= params.yaml
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := False
export DVC_NO_ANALYTICS := 1
export MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK := true
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run test test-all bench lint repro experiments clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# torch and torchvision first and together: an unpinned torchvision silently replaces torch.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,s3]'
	# DeepSpeed imports torch at build time: no build isolation, no CUDA ops built on CPU machines.
	DS_BUILD_OPS=0 $(PY) -m pip install -q --no-build-isolation deepspeed==0.19.8
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/mllm4d --params $(PARAMS) pipeline

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(PY) -m pytest -q

# The quick benchmarks; benchmarks/learning_ladder.py (SFT vs its controls per world, ~10 min a rung; the small preset's
# result with --params presets/small.yaml --rung default, ~25 min) and benchmarks/learning_small.py (history) are long;
# p4d_inference_cost reads the checkpoints `make run` wrote; orchestration_overhead runs `make run`'s chain.
BENCHMARKS := render_speed stereo_quality curation_quality sft_throughput eval_throughput teacher_quality grpo_step
bench: $(STAMP)
	for b in $(BENCHMARKS); do $(PY) benchmarks/$$b.py || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check components flows tests benchmarks

repro: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/mllm4d --params $(PARAMS) repro

# 4D-RGPT's ablation tables (Tab. 4, 5, 6) and GRPO's on the small preset, 3 seeds, pooled: hours on a 2-core CPU
# (one seed of tables 4, 5 and grpo ~1 h; Tab. 6 trains an SFT per time cue). Seeds in parallel, one process
# each: `mllm4d ... experiments --seeds N --work experiments/N`, then `mllm4d experiments-pool --seeds 0 1 2`.
experiments: $(STAMP)
	$(VENV)/bin/mllm4d --params presets/small.yaml experiments --seeds 0 1 2

clean:
	rm -rf data reports mlflow.db mlartifacts experiments
