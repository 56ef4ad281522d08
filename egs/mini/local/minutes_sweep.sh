#!/usr/bin/env bash
# egs/mini/local/minutes_sweep.sh: LM variants against today's default at equal training minutes,
# on the dev split only (never test). One `polyspeech train lm` per variant, 1 CPU thread each, $nj
# side by side, the same dev evaluations for all; then benchmarks/lm_minutes.py writes the table
# (dev metrics interpolated at --minutes, the step time of each run). Needs stages 0-3 of run.sh.
#
#   bash local/minutes_sweep.sh --tasks asr --steps 900 --minutes 4 \
#     --variants "base: lr3:lr=3e-3 sp:perturb.speed=0.1"
#   bash local/minutes_sweep.sh --tasks lid --steps 300 --seeds "0 1 2" --precisions "fp32 bf16" --variants "base:"
#
# A variant is NAME:KEY=VALUE,KEY=VALUE (dotted keys of conf/lm_tiny.yaml; `base:` = no change).
# Runs go to $out_dir/<tasks>_<precision>_s<seed>/<variant>, one table per seed and precision;
# with several seeds or precisions, benchmarks/lm_minutes.py --spread adds the mean and spread.
set -euo pipefail
cd "$(dirname "$0")/.."

tasks=asr            # comma-separated, as `train lm --tasks`
steps=900
minutes=4
variants="base:"
nj=2
seeds=0              # one run per seed ...
precisions=auto      # ... and precision (fp32: as a CPU without bf16 trains; this CPU's auto is bf16)
eval_every=100
data_dir=data
out_dir=exp_sweep
conf=../../conf/lm_tiny.yaml
. ../../utils/parse_options.sh
. ../../utils/recipe_lib.sh

feats=$data_dir/sset
dirs=()
for seed in $seeds; do
  for precision in $precisions; do
    dir=$out_dir/${tasks//,/_}_${precision}_s$seed
    dirs+=("$dir")
    for v in $variants; do
      name=${v%%:*} overrides=${v#*:}
      exp=$dir/$name
      mkdir -p "$exp"
      derive_config "$conf" "$exp/config_in.yaml" "seed=$seed" "precision=$precision" "eval_every=$eval_every" "valid_every=$eval_every" ${overrides//,/ }
      echo "${overrides//,/, }" > "$exp/overrides.txt"
      lane "$exp/train.log" polyspeech train lm --config "$exp/config_in.yaml" --tasks "$tasks" --max-steps "$steps" --threads 1 \
        --train-cuts "$feats/synth_cuts_train.jsonl.gz" --dev-cuts "$feats/synth_cuts_dev.jsonl.gz" --exp-dir "$exp" --resume --no-progress
    done
  done
done
wait_lanes
for dir in "${dirs[@]}"; do
  python3 ../../benchmarks/lm_minutes.py --minutes "$minutes" $(for v in $variants; do echo "$dir/${v%%:*}"; done) > "$dir/table.md"
  log "table: $dir/table.md"
  cat "$dir/table.md"
done
