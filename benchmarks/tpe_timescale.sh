#!/bin/bash
# SFT of the embedded default with TPE at max timescale $1 and amplitude $2 (model.tpe_scale, default 1; 1000 steps),
# then its evaluation on the bench; benchmarks/results/tpe_timescale_default.md. Run after `make run` (reads
# data/curated); writes under /tmp/tpe (T$1, or T$1_s$2 with a scale).
T=$1; S=${2:-1.0}; N=T$T; [ "$S" != "1.0" ] && N=${N}_s$S
W=/tmp/tpe/$N; mkdir -p /tmp/tpe
cd "$(dirname "$0")/.."
export PREFECT_HOME=/tmp/tpe/prefect$N TOKENIZERS_PARALLELISM=false MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK=true
O="-S tracking.tracking_uri=sqlite:////tmp/tpe/m$N.db -S tracking.artifact_location=/tmp/tpe/art$N -S model.time_cue=tpe -S model.tpe_max_timescale=$T -S model.tpe_scale=$S"
.venv/bin/mllm4d $O base-model --curated data/curated --out $W/base > $W.log 2>&1 &&
.venv/bin/mllm4d $O sft --curated data/curated --base $W/base --out $W/sft >> $W.log 2>&1 &&
.venv/bin/mllm4d $O evaluate --curated data/curated --model $W/sft/model --name tpe_$N --out $W/eval >> $W.log 2>&1
echo "exit $?" >> $W.log
