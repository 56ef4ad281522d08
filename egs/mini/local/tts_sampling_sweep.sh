#!/usr/bin/env bash
# egs/mini/local/tts_sampling_sweep.sh: TTS sampling settings on the dev split only (never test).
# Each setting decodes the same evenly spaced dev cuts with one LM (`decode --task tts`), the TTS
# judge of the recipe (the ASR model with the lower dev error) transcribes them, and `score` writes
# one table (judge CER, SECS, MCD) per setting. Needs stages 0-4 of run.sh.
#
#   bash local/tts_sampling_sweep.sh --lm tts --settings "plain:--top-p,1.0,--repetition-window,0 p05_ras10:--top-p,0.5,--repetition-window,10"
#
# A setting is NAME:OPT,VALUE,OPT,VALUE (options of `polyspeech decode`; unset ones take decode's defaults:
# nucleus 0.5 with repetition-aware sampling, window 10).
set -euo pipefail
cd "$(dirname "$0")/.."

lm=multi
plain="--top-p,1.0,--repetition-window,0"
settings="t1:$plain t1_k20:$plain,--top-k,20 t1_p09:--top-p,0.9,--repetition-window,0 t07_k50:$plain,--temperature,0.7,--top-k,50
  k1:$plain,--top-k,1 k3:$plain,--top-k,3 p08_ras10:--top-p,0.8 p05_ras10:--top-p,0.5 p02_ras10:--top-p,0.2 k1_ras10:--top-k,1,--top-p,1.0
  p05_ras10_t02:--top-p,0.5,--repetition-threshold,0.2 p05_ras20:--top-p,0.5,--repetition-window,20"
num_cuts=64
nj=2
data_dir=data
exp_dir=exp
out_dir=exp_tts_sweep
. ../../utils/parse_options.sh
. ../../utils/recipe_lib.sh

mkdir -p "$out_dir"
dev=$out_dir/dev_cuts.jsonl.gz
[ -f "$dev" ] || python3 - "$data_dir/sset/synth_cuts_dev.jsonl.gz" "$dev" "$num_cuts" <<'PY'
import sys
from polyspeech_cli.data.manifest import read_cuts
cuts = list(read_cuts(sys.argv[1]))
step = max(1, len(cuts) // int(sys.argv[3]))
from lhotse import CutSet
CutSet.from_cuts(cuts[::step][: int(sys.argv[3])]).to_file(sys.argv[2])
PY
judge=$(tts_judge)
log "TTS judge: $judge; $(python3 -c 'import sys; from polyspeech_cli.data.manifest import read_cuts; print(len(read_cuts(sys.argv[1])))' "$dev") dev cuts"

sweep_one() {  # sweep_one NAME OPTS: decode, judge and score one setting
  local name=$1 opts
  IFS=, read -r -a opts <<< "$2"
  polyspeech decode --task tts --exp-dir "$exp_dir/lm_$lm" --cuts "$dev" --set-name "sweep_$name" \
    --codec "$exp_dir/codec" --vocoder "$exp_dir/vocoder" "${opts[@]}"
  polyspeech decode --task asr --exp-dir "$judge" --cuts "$exp_dir/lm_$lm/decode_tts_sweep_$name/cuts.jsonl.gz" \
    --set-name "judge_$name" --beam-size 4 --ctc-weight 0.8
}
for s in $settings; do
  lane "$out_dir/$lm/${s%%:*}.log" sweep_one "${s%%:*}" "${s#*:}"
done
wait_lanes
for s in $settings; do
  polyspeech score "$exp_dir/lm_$lm/decode_tts_sweep_${s%%:*}" "$judge/decode_asr_judge_${s%%:*}" \
    --out "$out_dir/$lm/${s%%:*}/RESULTS.md" | grep -E "CER|SECS|MCD" || true
done
