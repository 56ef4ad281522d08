#!/usr/bin/env bash
# egs/mini/local/minutes_sweep.sh: LM variants against today's default at equal training minutes,
# on the dev split only (never test). One `polyspeech train lm` per variant, 1 CPU thread each, $nj
# side by side, the same dev evaluations for all; then benchmarks/lm_minutes.py writes the table
# (dev metrics interpolated at --minutes, the step time of each run). Needs stages 0-3 of run.sh.
#
#   bash local/minutes_sweep.sh --tasks asr --steps 900 --minutes 4 \
#     --variants "base: lr3:lr=3e-3 sp:perturb.speed=0.1"
#
# A variant is NAME:KEY=VALUE,KEY=VALUE (dotted keys of conf/lm_tiny.yaml; `base:` = no change).
set -euo pipefail
cd "$(dirname "$0")/.."

tasks=asr            # comma-separated, as `train lm --tasks`
steps=900
minutes=4
variants="base:"
nj=2
seed=0
precision=auto       # fp32: as a CPU without bf16 trains (this CPU's auto is bf16)
eval_every=100
data_dir=data
out_dir=exp_sweep
conf=../../conf/lm_tiny.yaml
table=""             # default: $out_dir/<tasks>/table.md
. ../../utils/parse_options.sh
. ../../utils/recipe_lib.sh

dir=$out_dir/${tasks//,/_}_${precision}_s$seed
table=${table:-$dir/table.md}
feats=$data_dir/sset
for v in $variants; do
  name=${v%%:*} overrides=${v#*:}
  exp=$dir/$name
  mkdir -p "$exp"
  derive_config "$conf" "$exp/config_in.yaml" "seed=$seed" "precision=$precision" "eval_every=$eval_every" "valid_every=$eval_every" ${overrides//,/ }
  echo "${overrides//,/, }" > "$exp/overrides.txt"
  lane "$exp/train.log" polyspeech train lm --config "$exp/config_in.yaml" --tasks "$tasks" --max-steps "$steps" --threads 1 \
    --train-cuts "$feats/synth_cuts_train.jsonl.gz" --dev-cuts "$feats/synth_cuts_dev.jsonl.gz" --exp-dir "$exp" --resume --no-progress
done
wait_lanes
python3 ../../benchmarks/lm_minutes.py --minutes "$minutes" $(for v in $variants; do echo "$dir/${v%%:*}"; done) > "$table"
log "table: $table"
cat "$table"
