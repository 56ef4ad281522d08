#!/usr/bin/env bash
# Shell helpers shared by the recipes in egs/*/run.sh (source it after utils/parse_options.sh).
#   log MESSAGE             a timestamped line naming the recipe line that logged it
#   lane LOG_FILE CMD...    run CMD in the background (output in LOG_FILE) once fewer than $nj such
#                           jobs run, with OMP_NUM_THREADS = cores / $nj (at least 1); in the foreground
#                           when nj = 1
#   wait_lanes              wait for every lane job; exit 1 naming the logs if one failed
#   stage_on N              true when stage N lies in --stage..--stop-stage; then notes the stage's start
#                           in $exp_dir/stage_times.tsv
#   stage_times [now]       markdown: minutes of the latest run of each stage (a stage ends where the next
#                           one of the same invocation starts; with 'now', this invocation's last stage until now)
#   stamp_fresh STAMP OPTIONS IN...
#                           true when STAMP records this work: the same OPTIONS (a JSON value or a plain
#                           string), inputs IN... unchanged since, its outputs present. The package's one
#                           skip rule (polyspeech_cli/stamps.py) for the work a recipe does itself; the
#                           `polyspeech` verbs skip finished work on their own stamps.
#   stamp_write STAMP OPTIONS OUT IN... record that this work made OUT (call it after the work)
#   stamp_of FILE           FILE's stamp: .NAME.stamp.json beside it
#   combine_cuts OUT IN...  the cuts of IN... (.jsonl.gz) in one manifest OUT (cut ids must be unique),
#                           unless OUT's stamp says it was made from exactly these inputs, unchanged since
#   config_value CONFIG KEY one value of a YAML config (KEY dotted: data.speech_codebooks)
#   scaled_steps CONFIG     max_steps of that YAML config x $budget (the embedded recipes' --budget)

log() { echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "${BASH_SOURCE[1]}"):${BASH_LINENO[0]}) $*"; }

lane_pids=()
lane() {
  local log_file=$1; shift
  if [ "${nj:-1}" -gt 1 ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$nj" ]; do sleep 1; done
    mkdir -p "$(dirname "$log_file")"
    log "  background: $* (log: $log_file)"
    # Each lane gets its share of the cores: torch's default (one OpenMP thread per core) in every lane
    # oversubscribes them, and spinning OpenMP threads then make two lanes >10x slower than one (two SECS
    # scorings side by side on 2 cores: 19.7 s with 1 thread each, over 200 s with the default 2).
    local cores; cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
    ( export OMP_NUM_THREADS=$(( cores / nj > 1 ? cores / nj : 1 )); "$@" ) > "$log_file" 2>&1 &
    lane_pids+=($!)
  else
    "$@"
  fi
}

wait_lanes() {
  local failed=0
  for pid in "${lane_pids[@]}"; do wait "$pid" || failed=1; done
  lane_pids=()
  [ "$failed" = 0 ] || { log "a background job failed: see the logs named above"; exit 1; }
}

_invocation="$$-$(date +%s)"
stage_on() {
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  mkdir -p "${exp_dir:-exp}" && printf '%s\t%s\t%s\n' "$_invocation" "$1" "$(date +%s)" >> "${exp_dir:-exp}/stage_times.tsv"
}

stage_times() {
  [ -f "${exp_dir:-exp}/stage_times.tsv" ] || return 0
  awk -F'\t' -v id="$_invocation" -v now="$( [ "${1:-}" = now ] && date +%s)" '
    { if ($1 in last) dur[last[$1]] = $3 - t[$1]; last[$1] = $2; t[$1] = $3 }
    END { if (now != "" && id in last) dur[last[id]] = now - t[id]
          last_stage = -1; for (s in dur) if (s + 0 > last_stage) last_stage = s + 0
          if (last_stage < 0) exit
          printf "| stage | minutes |\n|---|---|\n"; total = 0
          for (s = 0; s <= last_stage; s++) if (s in dur) { printf "| %d | %.1f |\n", s, dur[s] / 60; total += dur[s] }
          printf "| all of these | %.1f |\n", total / 60 }' "${exp_dir:-exp}/stage_times.tsv"
}

stamp_of() { echo "$(dirname "$1")/.$(basename "$1").stamp.json"; }

# OPTIONS is read as JSON when it is JSON ('{"cmd": "combine"}'), else kept as the string it is.
_stamp_py='import json, os, sys
from polyspeech_cli.stamps import is_fresh, stamp_key, write_stamp
def key(options, inputs):
    try:
        options = json.loads(options)
    except ValueError:
        pass
    return stamp_key(options, inputs)'

stamp_fresh() {
  python3 -c "$_stamp_py"'
stamp, options, inputs = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.exit(0 if all(os.path.exists(p) for p in inputs) and is_fresh(stamp, key(options, inputs)) else 1)' "$@"
}

stamp_write() {
  python3 -c "$_stamp_py"'
stamp, options, out, inputs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
write_stamp(stamp, key(options, inputs), [out])' "$@"
}

combine_cuts() {
  local out=$1 f msg; shift
  for f in "$@"; do
    [ -f "$f" ] || { log "combine_cuts: $f is missing (run the stage that makes it first)"; return 1; }
    [[ $f == *.jsonl.gz ]] || { log "combine_cuts: $f is not a .jsonl.gz manifest"; return 1; }
  done
  mkdir -p "$(dirname "$out")"
  # Concatenated gzip members are one valid gzip file (RFC 1952), and a cuts manifest is one JSON cut
  # per line: the inputs' bytes, in order, are their combined manifest (no cut is loaded). The key is
  # the one egs/real's former `cut_tools.py combine` wrote, so the manifests it made stay fresh.
  msg=$(python3 - "$out" "$(stamp_of "$out")" "$@" <<'PY'
import gzip, json, os, shutil, sys
from polyspeech_cli.stamps import is_fresh, stamp_key, write_stamp
out, stamp, inputs = sys.argv[1], sys.argv[2], sys.argv[3:]
key = stamp_key({"cmd": "combine", "factors": None}, inputs)
if is_fresh(stamp, key):
    print(f"{out}: already combined from these {len(inputs)} manifest(s); nothing to do")
    sys.exit(0)
seen = {}
for path in inputs:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                cut_id = json.loads(line)["id"]
                if cut_id in seen:
                    sys.exit(f"combine_cuts: cut id '{cut_id}' is in both {seen[cut_id]} and {path} (cut ids must be unique across sets)")
                seen[cut_id] = path
tmp = os.path.join(os.path.dirname(out) or ".", f".tmp{os.getpid()}.{os.path.basename(out)}")
try:
    with open(tmp, "wb") as dst:
        for path in inputs:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, dst)
    os.replace(tmp, out)
finally:
    if os.path.exists(tmp):
        os.remove(tmp)
write_stamp(stamp, key, [out])
print(f"wrote {out} ({len(seen)} cuts of {len(inputs)} manifest(s) combined)")
PY
  ) || return 1
  log "  $msg"
}

config_value() {  # config_value CONFIG DOTTED.KEY: one value of a YAML config
  python3 -c 'import functools, sys, yaml; print(functools.reduce(lambda d, k: d[k], sys.argv[2].split("."), yaml.safe_load(open(sys.argv[1]))))' "$1" "$2"
}

scaled_steps() {
  python3 -c 'import sys, yaml; print(max(1, round(yaml.safe_load(open(sys.argv[1]))["max_steps"] * float(sys.argv[2]))))' "$1" "$budget"
}

# ---- The embedded recipes: egs/mini, egs/real -------------------------------------------------
# They read the recipe's lm_opts (array: the options every LM trains with), lm_train_cuts, lm_dev_cuts,
# tasks, exp_dir, test_cuts, tts_test_cuts (default $test_cuts), test_set (the decodes' --set-name;
# empty: named after the cuts), asr_decode_opts and tts_decode_opts (arrays).
#   train_lm NAME TASKS [options]   `polyspeech train lm` of $exp_dir/lm_NAME on these tasks (skips a finished run)
#   tts_judge                       the ASR model with the lower dev error of lm_asr and lm_multi (chosen on
#                                   dev, never on test): the one that transcribes all TTS audio
#   decode_system LM...             every task of the test set with these LMs (multi, or the single-task ones);
#                                   after each decode, `after_decode DECODE_DIR` when the recipe defines it
train_lm() {
  local name=$1 task_list=$2; shift 2
  polyspeech train lm "${lm_opts[@]}" --tasks "$task_list" --train-cuts "$lm_train_cuts" --dev-cuts "$lm_dev_cuts" \
    --exp-dir "$exp_dir/lm_$name" --resume --no-progress "$@"
}

tts_judge() { polyspeech best-lm --task asr "$exp_dir/lm_asr" "$exp_dir/lm_multi"; }

decode_system() {
  local lm t opts
  for lm in "$@"; do
    for t in $tasks; do
      [ "$lm" = multi ] || [ "$lm" = "$t" ] || continue
      opts=(--task "$t" --exp-dir "$exp_dir/lm_$lm" ${test_set:+--set-name "$test_set"})
      case $t in
        asr) opts+=(--cuts "$test_cuts" "${asr_decode_opts[@]}") ;;
        tts) opts+=(--cuts "${tts_test_cuts:-$test_cuts}" "${tts_decode_opts[@]}" --codec "$exp_dir/codec" --vocoder "$exp_dir/vocoder") ;;
        *) opts+=(--cuts "$test_cuts") ;;
      esac
      polyspeech decode "${opts[@]}"
      if declare -F after_decode > /dev/null; then after_decode "$exp_dir/lm_$lm/decode_${t}_${test_set:-test}"; fi
    done
  done
}

# train_lm_systems TRAIN_CUTS DEV_CUTS: the embedded recipes' training stage: the multitask LM, the
# four single-task LMs (early stopping) and the speech decoder (on these fbank cuts, 1 thread: its
# step is as fast on 1 thread as on 2), $nj at a time, longest first. Needs the recipe's
# `train_lm NAME TASKS [options]`, $tasks, $patience, $exp_dir and vocoder_opts.
# $single_steps: `matched` (default) trains each single-task LM for exactly the steps the multitask
# run spends on its task (`--steps-share-of`: as many batches of its task as the multitask model
# sees, early stopping may end it sooner), so the multitask model gets about half of the LM time;
# `cap`: each single-task LM may train as many steps as the multitask LM (the older rule).
# $multi_eval_every (optional): the multitask LM's dev evaluation interval (`--eval-every`); it has
# no early stopping, so its evaluations only draw the curves.
train_lm_systems() {
  local share=() multi_opts=()
  [ "${single_steps:-matched}" = matched ] && share=(--steps-share-of "${tasks// /,}")
  [ -n "${multi_eval_every:-}" ] && multi_opts=(--eval-every "$multi_eval_every")
  lane "$exp_dir/lm_multi/train.log" train_lm multi "${tasks// /,}" "${multi_opts[@]}"
  lane "$exp_dir/lm_asr/train.log" train_lm asr asr --patience "$patience" "${share[@]}"
  lane "$exp_dir/lm_tts/train.log" train_lm tts tts --patience "$patience" "${share[@]}"
  lane "$exp_dir/vocoder/train.log" polyspeech train vocoder "${vocoder_opts[@]}" --threads 1 --no-progress \
    --train-cuts "$1" --dev-cuts "$2" --exp-dir "$exp_dir/vocoder" --resume
  for t in lid gid; do lane "$exp_dir/lm_$t/train.log" train_lm "$t" "$t" --patience "$patience" "${share[@]}"; done
  wait_lanes
}

# ---- Paper-scale recipes: egs/aishell, egs/librispeech, egs/commonvoice --------------------------
# What these recipes share. Each recipe prepares its corpus in stage 0 (its own call) into the sets
# `train`, `dev` and $test_sets, named as `polyspeech prepare` names manifests,
# <dir>/<corpus>_cuts_<set>.jsonl.gz, then runs `paper_stages` (stages 1-7) and any stages of its own.
# The functions read the recipe's variables: stage stop_stage corpus tasks test_sets data_dir exp_dir
# conf device ngpu nj decode_threads hubert_model hubert_layer hubert_batch lm_epochs lm_overrides
# beam_size ctc_weight encodec_bandwidth encodec_checkpoint.
#
#   has_task TASK                       true when TASK is in $tasks (comma-separated)
#   cuts_of DIR SET...                  the cuts manifests of these sets in DIR
#   derive_config BASE OUT KEY=VALUE... BASE (YAML) with dotted keys set (VALUE read as YAML) -> OUT; the
#                                       trainer that loads OUT checks the keys (a typo is an error)
#   steps_for_epochs CUTS CONFIG EPOCHS TASKS
#                                       LM steps for EPOCHS passes of each task over CUTS: CONFIG's
#                                       max_duration x grad_accum seconds per GPU and step, on $ngpu GPUs
#                                       (batches are not always full: the real epochs are a little fewer)
#   train_lm_ngpu [train lm options]    `polyspeech train lm` ($ngpu = 1) or torchrun with $ngpu processes
#   train_paper_lm NAME FEATS TASKS [KEY=VALUE...]
#                                       $conf/lm_160m.yaml with these tasks, the KEY=VALUEs, $lm_overrides
#                                       and $lm_epochs epochs, on FEATS/{train,dev} -> $exp_dir/lm_NAME
#   extract_hubert OUT_DIR CUTS...      HuBERT layer $hubert_layer features on $device (fp16 on a GPU)
#   decode_lm EXP CUTS_DIR TASKS SET... decode each task (comma-separated) on each SET, $nj at a time
#   tts_intelligibility EXP SET...      HuBERT features of EXP's synthesized SET audio, transcribed by EXP's ASR
#                                       (and by Whisper too when the recipe's asr_judge is whisper:DIR)
#   score_lm EXP TASKS SET...           score EXP's decodes of these tasks on these sets -> EXP/RESULTS.md
#   input_experiment SET...             the paper's first experiment: single-task ASR LMs on HuBERT
#                                       embeddings and on EnCodec tokens, decoded on each SET and compared
#   paper_stages                        stages 1-7: HuBERT features, SSET codec, speech decoder, multitask
#                                       LM, decoding, scoring, the input experiment

has_task() { [[ ,$tasks, == *,$1,* ]]; }

cuts_of() {
  local dir=$1 set; shift
  for set in "$@"; do echo "$dir/${corpus}_cuts_$set.jsonl.gz"; done
}

derive_config() {
  local base=$1 out=$2; shift 2
  mkdir -p "$(dirname "$out")"
  python3 - "$base" "$out" "$@" <<'EOF'
import os, sys, yaml
base, out, sets = sys.argv[1], sys.argv[2], sys.argv[3:]
cfg = yaml.safe_load(open(base, encoding="utf-8")) or {}
for item in sets:
    key, sep, value = item.partition("=")
    if not sep or not key:
        sys.exit(f"derive_config: '{item}' is not KEY=VALUE (e.g. max_duration=300 or data.speech_input=tokens)")
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)
text = f"# {base} with {' '.join(sets) or 'no changes'} (utils/recipe_lib.sh derive_config)\n"
text += yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
if not os.path.isfile(out) or open(out, encoding="utf-8").read() != text:  # unchanged: leave the file alone
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(out + ".tmp", out)
EOF
}

steps_for_epochs() {
  python3 - "$@" "${ngpu:-1}" <<'EOF'
import math, sys, yaml
from lhotse import load_manifest_lazy
cuts, config, epochs, tasks, ngpu = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4].split(","), int(sys.argv[5])
seconds = sum(c.duration for c in load_manifest_lazy(cuts))
cfg = yaml.safe_load(open(config, encoding="utf-8"))
# each step trains one task on grad_accum batches of at most max_duration seconds per GPU
per_step = float(cfg["max_duration"]) * int(cfg.get("grad_accum", 1)) * max(1, ngpu)
print(max(1, math.ceil(epochs * len(tasks) * seconds / per_step)))
EOF
}

train_lm_ngpu() {
  if [ "${ngpu:-1}" -gt 1 ]; then
    # one process per GPU: `--device auto` gives each its own (cuda:LOCAL_RANK); `cuda` would put all on GPU 0
    local lm_device=$device
    [[ $device == cuda* ]] && lm_device=auto
    log "  torchrun --standalone --nproc_per_node $ngpu -m polyspeech_cli train lm --device $lm_device $*"
    torchrun --standalone --nproc_per_node "$ngpu" -m polyspeech_cli train lm --device "$lm_device" "$@"
  else
    polyspeech train lm --device "$device" "$@"
  fi
}

train_paper_lm() {
  local name=$1 feats=$2 task_list=$3 steps; shift 3
  local cfg="$exp_dir/conf/lm_$name.yaml"
  # lm_overrides is a list of KEY=VALUE words, split on purpose
  derive_config "$conf/lm_160m.yaml" "$cfg" "tasks=[$task_list]" "$@" $lm_overrides
  steps=$(steps_for_epochs "$(cuts_of "$data_dir" train)" "$cfg" "$lm_epochs" "$task_list")
  derive_config "$conf/lm_160m.yaml" "$cfg" "tasks=[$task_list]" "$@" $lm_overrides "max_steps=$steps"
  log "  lm_$name: tasks $task_list, $steps steps ($lm_epochs epochs per task on $ngpu GPU(s)), $cfg"
  train_lm_ngpu --config "$cfg" --train-cuts "$(cuts_of "$feats" train)" --dev-cuts "$(cuts_of "$feats" dev)" \
    --exp-dir "$exp_dir/lm_$name" --resume --no-progress
}

extract_hubert() {
  local out=$1; shift
  # on a GPU the forward pass runs in fp16 (polyspeech_cli/tokens/hubert.py); batches hold cuts of similar length
  polyspeech extract-tokens --type hubert "$@" --model "$hubert_model" --layer "$hubert_layer" \
    --batch-size "$hubert_batch" --device "$device" --out-dir "$out"
}

decode_lm() {
  local exp=$1 cuts_dir=$2 task_list=$3 set t; shift 3
  for set in "$@"; do
    for t in ${task_list//,/ }; do
      local opts=(--task "$t" --exp-dir "$exp" --cuts "$(cuts_of "$cuts_dir" "$set")" --set-name "$set" --threads "$decode_threads" --device "$device")
      case $t in
        asr) opts+=(--beam-size "$beam_size" --ctc-weight "$ctc_weight") ;;
        tts) opts+=(--codec "$exp_dir/codec" --vocoder "$exp_dir/vocoder") ;;
      esac
      lane "$exp/decode_${t}_$set.log" polyspeech decode "${opts[@]}"
    done
  done
  wait_lanes
}

tts_intelligibility() {
  local exp=$1 set; shift
  for set in "$@"; do
    extract_hubert "$exp/tts_hubert_$set" "$exp/decode_tts_$set/cuts.jsonl.gz"
    lane "$exp/decode_asr_tts_$set.log" polyspeech decode --task asr --exp-dir "$exp" --cuts "$exp/tts_hubert_$set/cuts.jsonl.gz" \
      --set-name "tts_$set" --beam-size "$beam_size" --ctc-weight "$ctc_weight" --threads "$decode_threads" --device "$device"
    if [[ ${asr_judge:-} == whisper:* ]]; then  # --asr-judge whisper:DIR: a judge that shares no training data with the TTS
      lane "$exp/decode_asr_tts_${set}_whisper.log" polyspeech judge --asr-judge "$asr_judge" --cuts "$exp/decode_tts_$set/cuts.jsonl.gz" \
        --out-root "$exp" --set-name "tts_${set}_whisper"
    fi
  done
  wait_lanes
}

score_lm() {
  local exp=$1 task_list=$2 set t dirs=(); shift 2
  for set in "$@"; do
    for t in ${task_list//,/ }; do dirs+=("$exp/decode_${t}_$set"); done
    if [[ ,$task_list, == *,tts,* ]]; then dirs+=("$exp/decode_asr_tts_$set"); fi  # the TTS audio transcribed: intelligibility
    if [[ ,$task_list, == *,tts,* && -d $exp/decode_asr_tts_${set}_whisper ]]; then dirs+=("$exp/decode_asr_tts_${set}_whisper"); fi
  done
  polyspeech score "${dirs[@]}" --out "$exp/RESULTS.md"
}

input_experiment() {
  # Both LMs without the auxiliary CTC loss (and CTC scores in decoding): the CTC head reads the
  # continuous speech states only (polyspeech_cli/lm/model.py), so token input cannot have it.
  local set name books ctc_weight=0
  books=$(python3 -c 'import sys; print(round(float(sys.argv[1]) / 0.75))' "$encodec_bandwidth")  # 24 kHz EnCodec: 0.75 kbps per book
  log "  EnCodec tokens ($encodec_bandwidth kbps: $books books of 1024 codes at 75 Hz) -> $data_dir/encodec"
  polyspeech extract-tokens --type encodec $(cuts_of "$data_dir" train dev "$@") --bandwidth "$encodec_bandwidth" \
    ${encodec_checkpoint:+--checkpoint "$encodec_checkpoint"} --device "$device" --out-dir "$data_dir/encodec"
  train_paper_lm asr_hubert "$data_dir/hubert" asr model.ctc_weight=0
  train_paper_lm asr_encodec "$data_dir/encodec" asr model.ctc_weight=0 data.speech_input=tokens data.speech_tokens=encodec \
    "data.speech_codebooks=$books"
  decode_lm "$exp_dir/lm_asr_hubert" "$data_dir/hubert" asr "$@"
  decode_lm "$exp_dir/lm_asr_encodec" "$data_dir/encodec" asr "$@"
  for set in "$@"; do
    for name in hubert encodec; do
      mkdir -p "$exp_dir/input_$set/$name"
      polyspeech score "$exp_dir/lm_asr_$name/decode_asr_$set" --out "$exp_dir/input_$set/$name/RESULTS.md"
    done
    polyspeech compare "HuBERT embeddings=$exp_dir/input_$set/hubert/scores.json" "EnCodec tokens=$exp_dir/input_$set/encodec/scores.json" \
      --title "ASR input ($set): HuBERT layer-$hubert_layer embeddings vs EnCodec $encodec_bandwidth kbps tokens" \
      --lm-dir "$exp_dir/lm_asr_hubert" --lm-dir "$exp_dir/lm_asr_encodec" --out "$exp_dir/input_$set/RESULTS.md"
  done
}

paper_stages() {
  local sets="train dev $test_sets"
  if stage_on 1; then
    log "Stage 1: HuBERT features ($hubert_model, layer $hubert_layer, on $device) -> $data_dir/hubert"
    extract_hubert "$data_dir/hubert" $(cuts_of "$data_dir" $sets)
  fi
  if stage_on 2; then
    log "Stage 2: the SSET codec on the HuBERT features ($conf/codec_hubert.yaml, one GPU) -> $exp_dir/codec; SSET tokens -> $data_dir/sset"
    polyspeech train codec --config "$conf/codec_hubert.yaml" --train-cuts "$(cuts_of "$data_dir/hubert" train)" \
      --dev-cuts "$(cuts_of "$data_dir/hubert" dev)" --exp-dir "$exp_dir/codec" --device "$device" --resume
    polyspeech extract-tokens --type sset $(cuts_of "$data_dir/hubert" $sets) --checkpoint "$exp_dir/codec/model.safetensors" \
      --device "$device" --out-dir "$data_dir/sset"
  fi
  if stage_on 3; then
    if has_task tts; then
      log "Stage 3: the speech decoder ($conf/vocoder_hubert.yaml, one GPU: HuBERT features + speaker prompt -> mel -> HiFi-GAN) -> $exp_dir/vocoder"
      polyspeech train vocoder --config "$conf/vocoder_hubert.yaml" --train-cuts "$(cuts_of "$data_dir/hubert" train)" \
        --dev-cuts "$(cuts_of "$data_dir/hubert" dev)" --exp-dir "$exp_dir/vocoder" --device "$device" --resume --no-progress
    else
      log "Stage 3: no tts in --tasks $tasks: no speech decoder to train"
    fi
  fi
  if stage_on 4; then
    log "Stage 4: the multitask LM ($tasks; $conf/lm_160m.yaml) on $ngpu GPU(s) -> $exp_dir/lm_multi"
    train_paper_lm multi "$data_dir/sset" "$tasks"
  fi
  if stage_on 5; then
    log "Stage 5: decode $test_sets ($tasks; the LM on $device, $nj at a time)$(has_task tts && echo '; the TTS audio transcribed by the same LM')"
    decode_lm "$exp_dir/lm_multi" "$data_dir/sset" "$tasks" $test_sets
    if has_task tts; then tts_intelligibility "$exp_dir/lm_multi" $test_sets; fi
  fi
  if stage_on 6; then
    log "Stage 6: score -> $exp_dir/lm_multi/RESULTS.md"
    score_lm "$exp_dir/lm_multi" "$tasks" $test_sets
  fi
  if stage_on 7; then
    log "Stage 7: the paper's first experiment, ASR on HuBERT embeddings vs EnCodec tokens -> $exp_dir/input_<set>/RESULTS.md"
    input_experiment $test_sets
  fi
}
