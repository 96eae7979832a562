#!/bin/bash
# SFT of the embedded default with TPE at max timescale $1 (1000 steps), then its evaluation on the bench;
# benchmarks/results/tpe_timescale_default.md. Run after `make run` (reads data/curated); writes under /tmp/tpe.
T=$1; W=/tmp/tpe/T$T; mkdir -p /tmp/tpe
cd "$(dirname "$0")/.."
export PREFECT_HOME=/tmp/tpe/prefect$T TOKENIZERS_PARALLELISM=false MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK=true
O="-S tracking.tracking_uri=sqlite:////tmp/tpe/m$T.db -S tracking.artifact_location=/tmp/tpe/art$T -S model.time_cue=tpe -S model.tpe_max_timescale=$T"
.venv/bin/mllm4d $O base-model --curated data/curated --out $W/base > $W.log 2>&1 &&
.venv/bin/mllm4d $O sft --curated data/curated --base $W/base --out $W/sft >> $W.log 2>&1 &&
.venv/bin/mllm4d $O evaluate --curated data/curated --model $W/sft/model --name tpe_T$T --out $W/eval >> $W.log 2>&1
echo "exit $?" >> $W.log
