#!/bin/bash
# SFT of the embedded default with TPE at max timescale $1 (or no time cue: $1 = none), amplitude $2 (model.tpe_scale,
# default 1.0) and seed $3 (model/sft seeds, default the params'), then its evaluation on the bench (1000 steps);
# benchmarks/results/tpe_timescale_default.md. Run after `make run` (reads data/curated); writes /tmp/tpe/NAME
# (T100, T100_s0.3, T100_s0.3_seed1, none_seed1).
T=$1; S=${2:-1.0}; SEED=$3
cd "$(dirname "$0")/.."
if [ "$T" = none ]; then N=none; O="-S model.time_cue=none"
else N=T$T; O="-S model.time_cue=tpe -S model.tpe_max_timescale=$T -S model.tpe_scale=$S"; [ "$S" != "1.0" ] && N=${N}_s$S; fi
[ -n "$SEED" ] && { N=${N}_seed$SEED; O="$O -S model.seed=$SEED -S sft.seed=$SEED"; }
W=/tmp/tpe/$N; mkdir -p /tmp/tpe
export PREFECT_HOME=/tmp/tpe/prefect$N TOKENIZERS_PARALLELISM=false MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK=true
O="-S tracking.tracking_uri=sqlite:////tmp/tpe/m$N.db -S tracking.artifact_location=/tmp/tpe/art$N $O"
.venv/bin/mllm4d $O base-model --curated data/curated --out $W/base > $W.log 2>&1 &&
.venv/bin/mllm4d $O sft --curated data/curated --base $W/base --out $W/sft >> $W.log 2>&1 &&
.venv/bin/mllm4d $O evaluate --curated data/curated --model $W/sft/model --name tpe_$N --out $W/eval >> $W.log 2>&1
echo "exit $?" >> $W.log
