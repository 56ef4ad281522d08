#!/usr/bin/env bash
# egs/real/local/dev_check.sh: the dev sweep behind the ASR regularisation of egs/real (dev splits
# only, never test). Single-task ASR LMs (`--tasks asr`), one per variant, two side by side (1 CPU
# thread each), a fixed step budget, no early stopping (as stage 8 trains), each decoded on
# speechocean762's 2 dev speakers (carved from its 10 non-test speakers) with the recipe's ASR
# decode options (beam 4, CTC weight 0.8) and scored with `polyspeech score`. Needs stages 0-3 of run.sh.
#
#   bash local/dev_check.sh [--steps 1800] [--train-set speechocean|union] [--variants "d0.1 d0.1+sa d0.1+ls d0.1+sp"]
#   bash local/dev_check.sh --table-only true --variants "..."   # only (re)write the table of finished variants
#   bash local/dev_check.sh --steps 1500 --variants "d0.3+sa+sp" --ngram-weights "0.3 0.5" --table local/dev_check_ngram.md
#
# --ngram-weights "W ...": each ASR variant is also decoded with beam 8, CTC weight 0.8 and a character
# 6-gram of its training transcripts fused at each weight (egs/mini's decoding, README "Decoding"); the
# table lists them in one column ("0.3: CER, 0.5: CER").
#
# A variant is `dN` (model.dropout N) followed by any of `+sa` (SpecAugment: 2 frequency masks of
# up to 27 bins, 2 time masks of up to 5% of the frames), `+ls` (label smoothing 0.1) and `+sp`
# (speed-perturbed copies, factors 0.9 and 1.1, of the training cuts added to the training set).
# --train-set speechocean: speechocean762's 8 train speakers only (the data of stage 8's peer
# comparison, minus the 2 dev speakers); union: every source's train split (data/lm/cuts_train, as stage 4).
# The table (variant, dev CER/WER, train seconds, the dev-loss minimum) goes to --table.
#
# --task gid: single-task GID LMs instead, decoded on librispeech_gender's 25 dev speakers (one
# utterance each, unseen in training); --train-set union (data/lm/cuts_train: every source with a
# gender) or gendered (the sources with both genders: librispeech_gender, speechocean762, an4;
# librispeech_gender alone cannot train an LM: it has no transcripts for the text vocabulary). More variant parts: `+cropN` (class_crop_seconds
# N: random N-second windows of the GID inputs), `+bN` (max_duration N s per batch), `+lr2` (lr 2e-3).
#   bash local/dev_check.sh --task gid --train-set union --steps 600 --table local/dev_check_gid_union.md --variants "d0.1 d0.1+crop4+b60+sa d0.1+crop4+b60"
set -euo pipefail
cd "$(dirname "$0")/.."

steps=1800
variants="d0.1 d0.1+sa"
train_set=speechocean
task=asr
nj=2
data_dir=data
exp_dir=exp/dev_check
lm_conf=conf/lm_real.yaml
table=local/dev_check.md
table_only=false
ngram_weights=""
. ../../utils/parse_options.sh
. ../../utils/recipe_lib.sh

dev=$data_dir/fbank/speechocean762_train_cuts_dev.jsonl.gz
[ "$task" = gid ] && dev=$data_dir/fbank/librispeech_gender_cuts_dev.jsonl.gz
sp_sets=(speechocean762_train)
[ "$train_set" = union ] && sp_sets=(speechocean762_train fsdd an4)
case "$task:$train_set" in
  asr:speechocean) base_train=$data_dir/fbank/speechocean762_train_cuts_train.jsonl.gz; base_dev=$dev ;;
  asr:union) base_train=$data_dir/lm/cuts_train.jsonl.gz; base_dev=$data_dir/lm/cuts_dev.jsonl.gz ;;
  gid:union) base_train=$data_dir/lm/cuts_train.jsonl.gz; base_dev=$dev ;;
  gid:gendered)
    base_train=$exp_dir/gid/cuts_train_gendered.jsonl.gz; base_dev=$dev
    [ "$table_only" = true ] || combine_cuts "$base_train" \
      $(for name in librispeech_gender speechocean762_train an4; do echo "$data_dir/fbank/${name}_cuts_train.jsonl.gz"; done) ;;
  *) log "error: --task asr with --train-set speechocean|union, --task gid with union|gendered (got $task, $train_set)"; exit 1 ;;
esac
if [ "$task" = gid ]; then exp_dir=$exp_dir/gid/$train_set; else exp_dir=$exp_dir/$train_set; fi
mkdir -p "$exp_dir"

if [ "$table_only" != true ] && [[ "$variants" == *+sp* ]]; then
  sp=()
  for name in "${sp_sets[@]}"; do
    python3 local/cut_tools.py speed "$data_dir/${name}_cuts_train.jsonl.gz" "$data_dir/${name}_sp_cuts_train.jsonl.gz" --factors 0.9,1.1
    sp+=("$data_dir/${name}_sp_cuts_train.jsonl.gz")
  done
  polyspeech extract-tokens --type fbank "${sp[@]}" --out-dir "$data_dir/fbank"
  combine_cuts "$exp_dir/cuts_train_sp.jsonl.gz" "$base_train" \
    $(for name in "${sp_sets[@]}"; do echo "$data_dir/fbank/${name}_sp_cuts_train.jsonl.gz"; done)
fi

variant_config() {  # variant_config VARIANT OUT_YAML: conf/lm_real.yaml with the variant's regularisation
  python3 - "$lm_conf" "$1" "$2" "$steps" "$task" <<'EOF'
import re, sys, yaml
conf, variant, out, steps, task = sys.argv[1:]
parts = variant.split("+")
c = yaml.safe_load(open(conf))
c["model"]["dropout"] = float(parts[0].removeprefix("d"))
c["tasks"], c["max_steps"], c["patience"] = [task], int(steps), 0
c["eval_every"], c["eval_utts"] = (600, 60) if task == "asr" else (100, 25)
unknown = []
for part in parts[1:]:
    if part == "sa":
        c["spec_augment"] = {"num_freq_masks": 2, "freq_width": 27, "num_time_masks": 2, "time_width_ratio": 0.05}
    elif part == "ls":
        c["label_smoothing"] = 0.1
    elif part == "lr2":
        c["lr"] = 2e-3
    elif m := re.fullmatch(r"crop([0-9.]+)", part):
        c["class_crop_seconds"] = float(m.group(1))
    elif m := re.fullmatch(r"b([0-9.]+)", part):
        c["max_duration"] = float(m.group(1))
    elif part != "sp":
        unknown.append(part)
if unknown or not parts[0].startswith("d"):
    sys.exit(f"error: variant '{variant}': dN followed by +sa, +ls, +sp, +cropN, +bN, +lr2 (got {unknown or parts[0]})")
yaml.safe_dump(c, open(out, "w"), sort_keys=False)
EOF
}

run_variant() {  # run_variant NAME
  local v=$1 train=$base_train
  [[ "$v" == *+sp* ]] && train=$exp_dir/cuts_train_sp.jsonl.gz
  variant_config "$v" "$exp_dir/lm_$v.yaml"
  polyspeech train lm --config "$exp_dir/lm_$v.yaml" --tasks "$task" --max-steps "$steps" --train-cuts "$train" \
    --dev-cuts "$base_dev" --exp-dir "$exp_dir/lm_$v" --resume --no-progress
  if [ "$task" = gid ]; then
    polyspeech decode --task gid --exp-dir "$exp_dir/lm_$v" --cuts "$dev" --set-name dev --checkpoint "$exp_dir/lm_$v/model.safetensors"
    polyspeech score "$exp_dir/lm_$v/decode_gid_dev" --out "$exp_dir/lm_$v/RESULTS.md"
  else
    polyspeech decode --task asr --exp-dir "$exp_dir/lm_$v" --cuts "$dev" --set-name so_dev --beam-size 4 --ctc-weight 0.8
    for w in $ngram_weights; do
      polyspeech decode --task asr --exp-dir "$exp_dir/lm_$v" --cuts "$dev" --set-name "so_dev_ngram$w" --beam-size 8 \
        --ctc-weight 0.8 --ngram "$exp_dir/ngram/ngram.json" --lm-weight "$w"
    done
    polyspeech score "$exp_dir/lm_$v/decode_asr_so_dev" $(for w in $ngram_weights; do echo "$exp_dir/lm_$v/decode_asr_so_dev_ngram$w"; done) \
      --out "$exp_dir/lm_$v/RESULTS.md"
  fi
}
if [ "$table_only" != true ]; then
  export OMP_NUM_THREADS=1
  [ -z "$ngram_weights" ] || [ "$task" = gid ] || polyspeech train ngram --train-cuts "$base_train" --out "$exp_dir/ngram/ngram.json" --order 6
  for v in $variants; do lane "$exp_dir/lm_$v.log" run_variant "$v"; done
  wait_lanes
fi

if [ "$task" = gid ]; then
  polyspeech dev-table gid "$exp_dir" "$train_set" "$steps" "$table" $variants
  exit 0
fi
polyspeech dev-table asr "$exp_dir" "$train_set" "$steps" "$table" $variants
