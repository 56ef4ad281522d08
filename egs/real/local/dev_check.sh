#!/usr/bin/env bash
# egs/real/local/dev_check.sh: how the LM regularisation of conf/lm_real.yaml was chosen, on the
# dev split only (speechocean762's 2 dev speakers, carved from its 10 non-test speakers; and the
# union dev set the LMs evaluate on). Needs stages 0-3 of run.sh. ASR-only LMs, one per variant,
# two side by side, each decoded on speechocean762's dev speakers.
#
#   bash local/dev_check.sh [--steps 600] [--variants "d0.1 d0.0 d0.1sp"]
set -euo pipefail
cd "$(dirname "$0")/.."

steps=600
variants="d0.1 d0.0"      # dN: dropout N; a trailing "sp": + speed-perturbed copies (0.9, 1.1) of the non-TTS train cuts
nj=2
data_dir=data
exp_dir=exp/dev_check
lm_conf=conf/lm_real.yaml
. ../../utils/parse_options.sh
. ../../utils/recipe_lib.sh

dev=$data_dir/fbank/speechocean762_train_cuts_dev.jsonl.gz
mkdir -p "$exp_dir"
if [[ "$variants" == *sp* ]]; then
  sp=()
  for name in speechocean762_train fsdd an4; do
    python3 local/cut_tools.py speed "$data_dir/${name}_cuts_train.jsonl.gz" "$data_dir/${name}_sp_cuts_train.jsonl.gz" --factors 0.9,1.1
    sp+=("$data_dir/${name}_sp_cuts_train.jsonl.gz")
  done
  polyspeech extract-tokens --type fbank "${sp[@]}" --out-dir "$data_dir/fbank"
  python3 local/cut_tools.py combine "$exp_dir/cuts_train_sp.jsonl.gz" "$data_dir/lm/cuts_train.jsonl.gz" \
    $(for name in speechocean762_train fsdd an4; do echo "$data_dir/fbank/${name}_sp_cuts_train.jsonl.gz"; done)
fi

run_variant() {  # run_variant NAME
  local v=$1 dropout=${1#d} train=$data_dir/lm/cuts_train.jsonl.gz
  dropout=${dropout%sp}
  [[ "$v" == *sp ]] && train=$exp_dir/cuts_train_sp.jsonl.gz
  python3 -c 'import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); c["model"]["dropout"] = float(sys.argv[2]); yaml.safe_dump(c, open(sys.argv[3], "w"))' \
    "$lm_conf" "$dropout" "$exp_dir/lm_$v.yaml"
  polyspeech train lm --config "$exp_dir/lm_$v.yaml" --tasks asr --max-steps "$steps" --train-cuts "$train" \
    --dev-cuts "$data_dir/lm/cuts_dev.jsonl.gz" --exp-dir "$exp_dir/lm_$v" --resume --no-progress
  for w in 0.5 0.8; do
    polyspeech decode --task asr --exp-dir "$exp_dir/lm_$v" --cuts "$dev" --set-name "so_dev_ctc$w" --beam-size 4 --ctc-weight "$w"
  done
  polyspeech score "$exp_dir/lm_$v"/decode_asr_so_dev_ctc* --out "$exp_dir/lm_$v/RESULTS.md"
}
for v in $variants; do lane "$exp_dir/lm_$v.log" run_variant "$v"; done
wait_lanes
for v in $variants; do
  python3 - "$exp_dir/lm_$v" <<'EOF'
import csv, json, sys
from pathlib import Path
d = Path(sys.argv[1])
s = json.loads((d / "scores.json").read_text())
rows = [r for r in csv.DictReader(open(d / "train_log.csv")) if r["split"] == "dev" and r["metric"] in ("asr_cer", "asr_ctc_cer")]
last = {r["metric"]: float(r["value"]) for r in rows}
print(f"{d.name}: speechocean762 dev CER " + ", ".join(f"{k.removeprefix('decode_asr_so_dev_')} {100 * v['cer']['all']:.1f}%" for k, v in sorted(s.items()))
      + f"; union dev (greedy attention / CTC) {last.get('asr_cer', float('nan')):.3f} / {last.get('asr_ctc_cer', float('nan')):.3f}")
EOF
done
