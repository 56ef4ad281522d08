#!/usr/bin/env bash
# egs/real: the egs/mini stages on the small real human-speech sets of ../shared/data.
# One multitask LM (ASR, TTS, LID, GID) and four single-task LMs train on the union of the sets'
# train splits; every metric is scored per data source (conf/sets.tsv), never averaged over sources.
#
#   ./run.sh                                  # all stages (shared data from $POLYSPEECH_SHARED or ../../../shared)
#   ./run.sh --shared /path/to/shared         # the folder holding data/<set>/manifest.tsv
#   ./run.sh --stage 5 --stop-stage 6         # some stages
#   ./run.sh --quick true                     # tiny subsets and budgets, a few minutes (what the test runs)
#   ./run.sh --stage 8 --stop-stage 8         # the ESPnet peer vs our single-task ASR on speechocean762 (shared/tools/espnet_peer)
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
quick=false           # tiny subsets and budgets, for smoke tests
shared=${POLYSPEECH_SHARED:-../../../shared}   # holds data/<set>/manifest.tsv
budget=1              # scales every training budget (codec, speech decoder, LM steps)
lm_steps=""           # multitask LM steps (default: max_steps of $lm_conf x budget); the single-task cap
patience=3            # single-task LMs stop after this many dev evaluations without a new best (kept: the best)
single_steps=cap      # cap: each single-task LM may train as many steps as the multitask LM (the committed RESULTS.md); matched: its share
nj=2                  # jobs side by side (1 CPU thread each)
synth_utts=60         # generated eSpeak NG utterances per language mixed in for LID only (text and gender removed); 0 = none
speed_perturb=""      # e.g. 0.9,1.1: speed-perturbed copies of the non-TTS transcribed train cuts (ASR/LID/GID only; worse on the union dev set at the default budget, see conf/lm_real.yaml)
corpus_dir=corpus/synth   # where the generated utterances are written (when --synth-utts > 0)
mini_exp=../mini/exp/lm_multi   # stage 7: egs/mini's multitask LM evaluated on each test set (skipped when absent)
peer_minutes=8        # stage 8: the ESPnet peer's training budget (wall-clock minutes) ...
peer_steps=1500       # ... and our single-task ASR LM's steps for the same minutes (calibrated, see README "egs/real")
peer_conf=conf/lm_asr_peer.yaml   # stage 8: our ASR LM's settings (chosen on dev by local/dev_check.sh)
asr_judge=""          # stages 5-6: whisper:DIR, an independent Whisper judge of all TTS audio beside the LM judge (pip install -e '.[whisper]'): $exp_dir/judge_whisper, $exp_dir/score/<src>/whisper/RESULTS.md
peer_speed_perturb=0.9,1.1   # stage 8: speed-perturbed copies of the 10 speakers' cuts in our training set ("" = none; chosen on dev)
peer_lm_weight=0.3    # stage 8: our ASR decodes with beam 8 and a character 6-gram of the 10 speakers' transcripts at this weight
                      # (chosen on speechocean762's dev speakers: local/dev_check.sh --ngram-weights); 0 = beam 4, no n-gram
data_dir=data
exp_dir=exp
results=RESULTS.md
sets_conf=conf/sets.tsv
lm_conf=conf/lm_real.yaml
top_conf=../../conf   # codec, speech decoder and synth configs shared with egs/mini
. ../../utils/parse_options.sh
. ../../utils/recipe_lib.sh

data=$shared/data
if [ ! -d "$data" ]; then
  log "error: no real-speech data at $data: pass --shared DIR (the folder holding data/<set>/manifest.tsv) or set POLYSPEECH_SHARED"
  exit 1
fi

codec_opts=(--config "$top_conf/codec_tiny.yaml" --max-steps "$(scaled_steps "$top_conf/codec_tiny.yaml")")
vocoder_opts=(--config "$top_conf/vocoder_tiny.yaml" --max-steps "$(scaled_steps "$top_conf/vocoder_tiny.yaml")")
lm_steps=${lm_steps:-$(scaled_steps "$lm_conf")}
synth_opts=(--config "$top_conf/synth.yaml" --train-utts "$synth_utts" --dev-utts 4 --test-utts 8)
# Decoding settings of egs/mini (chosen on its dev split); see README "egs/real" for the dev check here.
asr_decode_opts=(--beam-size 4 --ctc-weight 0.8)
tts_decode_opts=(--temperature 1.0 --top-p 1.0 --repetition-window 0)  # plain sampling: its committed tables; the newer default (egs/mini's dev choice) is not checked on this recipe's dev
if [ "$quick" = true ]; then
  codec_opts=(--config "$top_conf/codec_tiny.yaml" --max-steps 20)
  vocoder_opts=(--config "$top_conf/vocoder_tiny.yaml" --max-steps 20)
  lm_steps=20
  asr_decode_opts=(--beam-size 1)  # models of 20 steps emit up to the length cap: greedy keeps the smoke test short
  tts_decode_opts+=(--max-ratio 1.0)  # the same for TTS: at most the real length
  [ "$synth_utts" = 0 ] || synth_opts=(--config "$top_conf/synth.yaml" --train-utts 2 --dev-utts 1 --test-utts 2)
fi
tasks="asr tts lid gid"
# utils/recipe_lib.sh's train_lm and decode_system: every LM on the union of the sources' splits; each
# task decoded once over the union of the test sets (TTS: the voices' test sets), then split per source.
lm_opts=(--config "$lm_conf" --speech-tokens sset --max-steps "$lm_steps")
lm_train_cuts=$data_dir/lm/cuts_train.jsonl.gz lm_dev_cuts=$data_dir/lm/cuts_dev.jsonl.gz
test_cuts=$data_dir/lm/cuts_test.jsonl.gz tts_test_cuts=$data_dir/lm/cuts_test_tts.jsonl.gz test_set=all

# The sets (conf/sets.tsv): names, and which are TTS voices.
all_sets=() tts_sets=() other_sets=()
declare -A split_of per_spk_of max_of
while read -r name split per max qper qmax tts; do
  case "$name" in ''|\#*) continue ;; esac
  all_sets+=("$name")
  split_of[$name]=$split
  if [ "$quick" = true ]; then per_spk_of[$name]=$qper; max_of[$name]=$qmax; else per_spk_of[$name]=$per; max_of[$name]=$max; fi
  if [ "$tts" = yes ]; then tts_sets+=("$name"); else other_sets+=("$name"); fi
done < "$sets_conf"
sources=("${all_sets[@]}")              # what is scored: every set, and the generated corpus when mixed in
[ "$synth_utts" = 0 ] || sources+=(synth)

# A set's cuts after stage 3: SSET tokens (+ fbank) for TTS voices, fbank for the others.
is_tts() { local s; for s in "${tts_sets[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
lm_cuts() {  # lm_cuts SET SPLIT: the manifest the LMs read
  if [ "$1" = synth ]; then echo "$data_dir/fbank/synth_lid_cuts_$2.jsonl.gz"
  elif is_tts "$1"; then echo "$data_dir/sset/$1_cuts_$2.jsonl.gz"
  else echo "$data_dir/fbank/$1_cuts_$2.jsonl.gz"; fi
}

if stage_on 0; then
  log "Stage 0: Lhotse manifests of ${all_sets[*]} from $data (16 kHz, split per conf/sets.tsv)$([ "$synth_utts" = 0 ] || echo ", and generated eSpeak NG utterances for LID (${synth_opts[*]:2})")"
  mkdir -p "$data_dir/log"
  for name in "${all_sets[@]}"; do
    [ -f "$data/$name/manifest.tsv" ] || { log "error: $data/$name/manifest.tsv not found (is --shared right?)"; exit 1; }
  done
  prepare_set() {  # prepare_set NAME: subset (if configured), then prepare tsv
    local name=$1 src=$data/$1
    if [ "${per_spk_of[$name]}" != 0 ] || [ "${max_of[$name]}" != 0 ]; then
      python3 local/subset_tsv.py "$src" "$data_dir/local/$name" --per-speaker "${per_spk_of[$name]}" --max-utts "${max_of[$name]}"
      src=$data_dir/local/$name
    fi
    polyspeech prepare tsv "$src" --corpus "$name" --data-dir "$data_dir" --split-ratios "${split_of[$name]}" --min-speakers 6 --sample-rate 16000
  }
  for name in "${all_sets[@]}"; do lane "$data_dir/log/prepare_$name.log" prepare_set "$name"; done
  if [ "$synth_utts" != 0 ]; then
    lane "$data_dir/log/prepare_synth.log" polyspeech prepare synth --corpus-dir "$corpus_dir" --data-dir "$data_dir" "${synth_opts[@]}"
  fi
  wait_lanes
  grep -h "note:" "$data_dir"/log/prepare_*.log || true
fi

split_manifests() {  # every prepared per-set manifest (what stage 1 extracts fbank for)
  local name s
  for name in "${all_sets[@]}"; do for s in train dev test; do echo "$data_dir/${name}_cuts_$s.jsonl.gz"; done; done
  if [ "$synth_utts" != 0 ]; then for s in train dev test; do echo "$data_dir/synth_lid_cuts_$s.jsonl.gz"; done; fi
  if [ -n "$speed_perturb" ]; then for name in "${other_sets[@]}"; do
    [ "$name" = librispeech_gender ] || echo "$data_dir/${name}_sp_cuts_train.jsonl.gz"; done; fi
}

if stage_on 1; then
  log "Stage 1: 80-dim fbank features of every set and split in $data_dir/fbank (8/16/22.05 kHz FLAC and WAV: one audio path)"
  if [ "$synth_utts" != 0 ]; then
    for s in train dev test; do python3 local/cut_tools.py lid-only "$data_dir/synth_cuts_$s.jsonl.gz" "$data_dir/synth_lid_cuts_$s.jsonl.gz"; done
  fi
  if [ -n "$speed_perturb" ]; then
    for name in "${other_sets[@]}"; do
      [ "$name" = librispeech_gender ] && continue  # no text: GID only, its 12 s utterances need no copies
      python3 local/cut_tools.py speed "$data_dir/${name}_cuts_train.jsonl.gz" "$data_dir/${name}_sp_cuts_train.jsonl.gz" --factors "$speed_perturb"
    done
  fi
  polyspeech extract-tokens --type fbank $(split_manifests) --out-dir "$data_dir/fbank"
fi

if stage_on 2; then
  log "Stage 2: train the SSET codec on the real sets' fbank (train splits) in $exp_dir/codec"
  for s in train dev; do
    combine_cuts "$data_dir/fbank/real_cuts_$s.jsonl.gz" $(for name in "${all_sets[@]}"; do echo "$data_dir/fbank/${name}_cuts_$s.jsonl.gz"; done)
  done
  polyspeech train codec "${codec_opts[@]}" --train-cuts "$data_dir/fbank/real_cuts_train.jsonl.gz" \
    --dev-cuts "$data_dir/fbank/real_cuts_dev.jsonl.gz" --exp-dir "$exp_dir/codec" --resume
fi

if stage_on 3; then
  log "Stage 3: SSET tokens of the TTS voices (${tts_sets[*]}): only their cuts become TTS examples; the LMs' train/dev/test manifests in $data_dir/lm"
  polyspeech extract-tokens --type sset $(for name in "${tts_sets[@]}"; do for s in train dev test; do echo "$data_dir/fbank/${name}_cuts_$s.jsonl.gz"; done; done) \
    --checkpoint "$exp_dir/codec/model.safetensors" --out-dir "$data_dir/sset"
  for s in train dev test; do
    extra=()
    if [ "$s" = train ] && [ -n "$speed_perturb" ]; then
      for name in "${other_sets[@]}"; do [ "$name" = librispeech_gender ] || extra+=("$data_dir/fbank/${name}_sp_cuts_train.jsonl.gz"); done
    fi
    combine_cuts "$data_dir/lm/cuts_$s.jsonl.gz" $(for src in "${sources[@]}"; do lm_cuts "$src" "$s"; done) "${extra[@]}"
  done
  combine_cuts "$data_dir/lm/cuts_test_tts.jsonl.gz" $(for name in "${tts_sets[@]}"; do lm_cuts "$name" test; done)
fi

if stage_on 4; then
  log "Stage 4: the multitask LM ($lm_steps steps), the four single-task LMs (early stopping, patience $patience, at most $lm_steps steps) and the speech decoder, $nj at a time"
  train_lm_systems "$data_dir/fbank/real_cuts_train.jsonl.gz" "$data_dir/fbank/real_cuts_dev.jsonl.gz"
fi

source_args() {  # --source NAME=CUTS for every scored source (the ids that split a decode per source)
  local src
  for src in "${sources[@]}"; do echo "--source"; echo "$src=$(lm_cuts "$src" test)"; done
}
after_decode() {  # after_decode DECODE_DIR: split a decode over the union into one per source (called by decode_system)
  python3 local/split_by_source.py "$1" --out-dir "$(dirname "$1")/by_source" $(source_args)
}

if stage_on 5; then
  log "Stage 5: decode each source's test set for every task it has labels for, with the multitask LM and with the single-task LMs"
  lane "$exp_dir/lm_multi/decode.log" decode_system multi
  lane "$exp_dir/decode_single.log" decode_system $tasks
  # The TTS back end's upper bound: the test cuts' own SSET tokens through codec decoder + speech decoder.
  resynth() {
    polyspeech decode --task tts --oracle tokens --set-name all_resynth --exp-dir "$exp_dir/lm_multi" \
      --cuts "$data_dir/lm/cuts_test_tts.jsonl.gz" --codec "$exp_dir/codec" --vocoder "$exp_dir/vocoder"
    after_decode "$exp_dir/lm_multi/decode_tts_all_resynth"
  }
  lane "$exp_dir/lm_multi/decode_resynth.log" resynth
  wait_lanes
  judge=$(tts_judge)
  log "  TTS judge: $judge (the lower dev ASR error of lm_asr and lm_multi)"
  judge_tts() {  # judge_tts LM_DIR_OF_TTS_DECODE LABEL
    polyspeech decode --task asr --exp-dir "$judge" --cuts "$1/cuts.jsonl.gz" --set-name "tts_$2" "${asr_decode_opts[@]}"
    after_decode "$judge/decode_asr_tts_$2"
  }
  lane "$judge/decode_tts_multi.log" judge_tts "$exp_dir/lm_multi/decode_tts_all" multi
  lane "$judge/decode_tts_tts.log" judge_tts "$exp_dir/lm_tts/decode_tts_all" tts
  lane "$judge/decode_tts_resynth.log" judge_tts "$exp_dir/lm_multi/decode_tts_all_resynth" resynth
  wait_lanes
  if [ -n "$asr_judge" ]; then  # --asr-judge whisper:DIR: the same TTS audio by a judge that shares no training data with it
    whisper_judge() {  # whisper_judge CUTS SET_NAME
      polyspeech judge --asr-judge "$asr_judge" --cuts "$1" --out-root "$exp_dir/judge_whisper" --set-name "$2"
      after_decode "$exp_dir/judge_whisper/decode_asr_$2"
    }
    whisper_judge "$exp_dir/lm_multi/decode_tts_all/cuts.jsonl.gz" tts_multi
    whisper_judge "$exp_dir/lm_tts/decode_tts_all/cuts.jsonl.gz" tts_tts
    whisper_judge "$exp_dir/lm_multi/decode_tts_all_resynth/cuts.jsonl.gz" tts_resynth
    whisper_judge "$data_dir/lm/cuts_test_tts.jsonl.gz" real_test  # the real audio of the TTS voices: the judge's own floor
  fi
fi

judge_label() { [ "$judge" = "$exp_dir/lm_asr" ] && echo single-task || echo multitask; }  # after judge=$(tts_judge)
compare_source() {  # compare_source SRC: the single-task vs multitask table of one source (after judge=$(tts_judge))
  local src=$1 out=$exp_dir/score/$1 lm cmp resynth_label
  cmp=("single-task=$out/single/scores.json" "multitask=$out/multi/scores.json")
  if [ -f "$out/resynth/scores.json" ]; then
    resynth_label="real SSET tokens resynthesized (TTS back-end upper bound)"
    cmp+=(--reference "$resynth_label=$out/resynth/scores.json"
          --tts-asr "single-task=$judge/by_source/decode_asr_tts_tts_$src" --tts-asr "multitask=$judge/by_source/decode_asr_tts_multi_$src"
          --tts-asr "$resynth_label=$judge/by_source/decode_asr_tts_resynth_$src"
          --tts-judge "$(judge_label)")  # every TTS voice has transcripts: the judge's CER on its real test audio is printed
  fi
  [ -f "conf/bars_$src.yaml" ] && cmp+=(--bars "conf/bars_$src.yaml")
  if [ "$src" = "${sources[0]}" ]; then for lm in multi $tasks; do cmp+=(--lm-dir "$exp_dir/lm_$lm"); done; fi
  polyspeech compare "${cmp[@]}" --title "$src: single-task vs multitask" --out "$out/compare.md"
}
assemble() {  # the per-source tables into $results
  local extra=()
  judge=$(tts_judge)
  [ -d "$exp_dir/mini_eval" ] && extra+=(--mini-dir "$exp_dir/mini_eval" --mini-exp "$mini_exp")
  [ -f "$exp_dir/peer_compare/peer_table.md" ] && extra+=(--section "$exp_dir/peer_compare/peer_table.md")
  polyspeech compare-sources --out "$results" --sources "${sources[*]}" --score-dir "$exp_dir/score" --data-dir "$data_dir" \
    --title "egs/real: RESULTS (recorded human speech)" \
    --line-note "SECS between the real test audio of the three TTS voices (cathy, LJSpeech, MagicData; all female)" \
    --judge-dir "$judge/by_source" --judge "$(judge_label)" --notes local/limits.md "${extra[@]}"
}

if stage_on 6; then
  log "Stage 6: score every source on its own, the single-task vs multitask table per source, $results"
  # One `polyspeech score` per system over every source's own decode dirs (each dir is one source), plus the
  # TTS decode of all voices together: the SECS line of different real speakers.
  multi=("$exp_dir/lm_multi/decode_tts_all") single=() resynth=()
  for src in "${sources[@]}"; do
    for t in $tasks; do
      [ -d "$exp_dir/lm_multi/by_source/decode_${t}_$src" ] && multi+=("$exp_dir/lm_multi/by_source/decode_${t}_$src")
      [ -d "$exp_dir/lm_$t/by_source/decode_${t}_$src" ] && single+=("$exp_dir/lm_$t/by_source/decode_${t}_$src")
    done
    [ -d "$exp_dir/lm_multi/by_source/decode_tts_resynth_$src" ] && resynth+=("$exp_dir/lm_multi/by_source/decode_tts_resynth_$src")
  done
  mkdir -p "$exp_dir"/score/all/{multi,single,resynth}
  lane "$exp_dir/score/all/multi.log" polyspeech score "${multi[@]}" --out "$exp_dir/score/all/multi/RESULTS.md"
  lane "$exp_dir/score/all/single.log" polyspeech score "${single[@]}" --out "$exp_dir/score/all/single/RESULTS.md"
  lane "$exp_dir/score/all/resynth.log" polyspeech score "${resynth[@]}" --out "$exp_dir/score/all/resynth/RESULTS.md"
  wait_lanes
  polyspeech split-scores --score-dir "$exp_dir/score" --sources "${sources[*]}" --line multi:decode_tts_all
  if [ -n "$asr_judge" ] && [ -d "$exp_dir/judge_whisper/by_source" ]; then  # the Whisper judge's CER per source (real audio first)
    for src in "${sources[@]}"; do
      wdirs=()
      for d in real_test tts_tts tts_multi tts_resynth; do
        if [ -d "$exp_dir/judge_whisper/by_source/decode_asr_${d}_$src" ]; then wdirs+=("$exp_dir/judge_whisper/by_source/decode_asr_${d}_$src"); fi
      done
      if [ ${#wdirs[@]} -gt 0 ]; then
        mkdir -p "$exp_dir/score/$src/whisper"
        polyspeech score "${wdirs[@]}" --out "$exp_dir/score/$src/whisper/RESULTS.md"
      fi
    done
  fi
  judge=$(tts_judge)
  for src in "${sources[@]}"; do lane "$exp_dir/score/$src/compare.log" compare_source "$src"; done
  wait_lanes
  assemble
fi

if stage_on 7; then
  if [ ! -f "$mini_exp/model.safetensors" ] && [ ! -d "$mini_exp/ckpt" ]; then
    log "Stage 7: skipped: no egs/mini model at $mini_exp (run egs/mini/run.sh, or pass --mini-exp EXP)"
  else
    log "Stage 7: egs/mini's multitask LM ($mini_exp, generated speech only) evaluated on each source's test set"
    for src in "${sources[@]}"; do
      # The prepared test cuts (evaluate computes the model's own features; our SSET tokens mean nothing to
      # egs/mini's codec); the generated set with all its labels (egs/mini's model was trained on them).
      cuts=$data_dir/${src}_cuts_test.jsonl.gz
      # TTS (in egs/mini's voices' speech decoder, prompted with this set's speakers) only for the TTS voices
      if is_tts "$src"; then mini_tasks=asr,tts,lid,gid; elif [ "$src" = librispeech_gender ]; then mini_tasks=lid,gid; else mini_tasks=asr,lid,gid; fi
      lane "$exp_dir/mini_eval/$src.log" polyspeech evaluate --exp-dir "$mini_exp" --cuts "$cuts" --tasks "$mini_tasks" --out-dir "$exp_dir/mini_eval/$src"
    done
    wait_lanes
    assemble
  fi
fi

if stage_on 8; then
  peer_dir=$shared/tools/espnet_peer
  if [ ! -f "$peer_dir/run_peer.sh" ]; then
    log "Stage 8: skipped: no ESPnet peer at $peer_dir (the shared tools are absent)"
  elif [ "$quick" = true ]; then
    log "Stage 8: skipped with --quick true (the peer comparison is an ${peer_minutes}-minute training run per system)"
  else
    # speechocean762, speaker-disjoint: train = its 10 non-test speakers (our train + dev splits), test = the 2 test speakers.
    out=$exp_dir/peer_compare
    log "Stage 8: ESPnet peer vs our single-task ASR on speechocean762 (10 speakers train, 2 test), $peer_minutes min each, side by side, in $out"
    mkdir -p "$out"
    python3 ../../utils/peer_manifest.py "$out/tsv/train" "$data_dir/speechocean762_train_cuts_train.jsonl.gz" "$data_dir/speechocean762_train_cuts_dev.jsonl.gz"
    python3 ../../utils/peer_manifest.py "$out/tsv/test" "$data_dir/speechocean762_train_cuts_test.jsonl.gz"
    ours_train=("$data_dir/fbank/speechocean762_train_cuts_train.jsonl.gz" "$data_dir/fbank/speechocean762_train_cuts_dev.jsonl.gz")
    if [ -n "$peer_speed_perturb" ]; then
      sp=()
      for s in train dev; do
        python3 local/cut_tools.py speed "$data_dir/speechocean762_train_cuts_$s.jsonl.gz" "$data_dir/speechocean762_train_sp_cuts_$s.jsonl.gz" --factors "$peer_speed_perturb"
        sp+=("$data_dir/speechocean762_train_sp_cuts_$s.jsonl.gz")
      done
      polyspeech extract-tokens --type fbank "${sp[@]}" --out-dir "$data_dir/fbank"
      ours_train+=("$data_dir/fbank/speechocean762_train_sp_cuts_train.jsonl.gz" "$data_dir/fbank/speechocean762_train_sp_cuts_dev.jsonl.gz")
    fi
    combine_cuts "$out/ours_cuts_train.jsonl.gz" "${ours_train[@]}"
    peer_decode_opts=("${asr_decode_opts[@]}") ours_decoding="beam 4, CTC weight 0.8"
    if [ "$peer_lm_weight" != 0 ]; then  # the text LM: the training transcripts (the speed-perturbed copies add no text)
      combine_cuts "$out/ngram/text_cuts.jsonl.gz" "$data_dir/speechocean762_train_cuts_train.jsonl.gz" "$data_dir/speechocean762_train_cuts_dev.jsonl.gz"
      polyspeech train ngram --train-cuts "$out/ngram/text_cuts.jsonl.gz" --out "$out/ngram/ngram.json" --order 6
      peer_decode_opts=(--beam-size 8 --ctc-weight 0.8 --ngram "$out/ngram/ngram.json" --lm-weight "$peer_lm_weight")
      ours_decoding="beam 8, CTC weight 0.8, the training transcripts' character 6-gram at $peer_lm_weight"
    fi
    # The peer and our timed training skip on stamps (utils/recipe_lib.sh stamp_fresh): the same
    # minutes / settings and unchanged inputs (peer_manifest.py rewrites a manifest only when it changes).
    peer_inputs=("$peer_dir/run_peer.sh" "$out/tsv/train/manifest.tsv" "$out/tsv/test/manifest.tsv")
    ours_inputs=("$peer_conf" "$out/ours_cuts_train.jsonl.gz")
    run_espnet() {
      if stamp_fresh "$out/espnet/.peer.stamp.json" "espnet peer, $peer_minutes min" "${peer_inputs[@]}"; then
        echo "$out/espnet: done with these inputs; nothing to do"; return
      fi
      THREADS=1 bash "$peer_dir/run_peer.sh" "$out/tsv/train" "$out/tsv/test" "$out/espnet" "$peer_minutes"
      stamp_write "$out/espnet/.peer.stamp.json" "espnet peer, $peer_minutes min" "$out/espnet/decode_test/summary.json" "${peer_inputs[@]}"
    }
    run_ours() {  # no dev set: the 2 dev speakers are training data here (as for the peer); the last model is decoded
      local t0
      if ! stamp_fresh "$out/lm_asr/.train_seconds.stamp.json" "asr, $peer_steps steps" "${ours_inputs[@]}"; then
        t0=$(date +%s.%N)
        OMP_NUM_THREADS=1 polyspeech train lm --config "$peer_conf" --tasks asr --max-steps "$peer_steps" --threads 1 \
          --train-cuts "$out/ours_cuts_train.jsonl.gz" --exp-dir "$out/lm_asr" --resume --no-progress
        python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$t0" > "$out/lm_asr/train_seconds"
        stamp_write "$out/lm_asr/.train_seconds.stamp.json" "asr, $peer_steps steps" "$out/lm_asr/train_seconds" "${ours_inputs[@]}"
      fi
      polyspeech decode --task asr --exp-dir "$out/lm_asr" --cuts "$data_dir/fbank/speechocean762_train_cuts_test.jsonl.gz" \
        --set-name so_test "${peer_decode_opts[@]}"
      polyspeech score "$out/lm_asr/decode_asr_so_test" --out "$out/lm_asr/RESULTS.md"
    }
    lane "$out/espnet.log" run_espnet
    lane "$out/ours.log" run_ours
    wait_lanes
    tail -1 "$out/espnet.log"
    polyspeech peer-table --peer-summary "$out/espnet/decode_test/summary.json" --ours-decode "$out/lm_asr/decode_asr_so_test" \
      --ours-exp "$out/lm_asr" --ours-train-seconds "$out/lm_asr/train_seconds" --score-out "$out/lm_asr/score_jiwer.json" \
      --train-desc "speechocean762's 10 non-test speakers, $(($(wc -l < "$out/tsv/train/manifest.tsv") - 1)) utts" \
      --ours-desc "\`$peer_conf\`, $peer_steps steps$([ -z "$peer_speed_perturb" ] || echo ", speed-perturbed copies $peer_speed_perturb"), $ours_decoding" \
      --out "$out/peer_table.md"
    [ -d "$exp_dir/score" ] && assemble
  fi
fi

log "Done (stages $stage..$stop_stage). Minutes per stage:"
stage_times now
