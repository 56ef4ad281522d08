#!/usr/bin/env bash
# egs/commonvoice: spoken language identification over several Common Voice locales and speaker
# gender identification from Common Voice's `gender` field, with the paper-size LM.
# A GPU recipe: README.md beside it lists the stages and what they cost (GPU-hours, GPU memory,
# disk: estimates) and which of the paper's numbers it targets.
#
#   ./run.sh --corpus-dir /data/cv-corpus-17.0-2024-03-15 --locales en,de,fr,es,zh-CN --ngpu 4
#   ./run.sh --corpus-dir ... --stage 1 --stop-stage 1
#
# Stage 0 (below) prepares the locales; stages 1-7 are utils/recipe_lib.sh `paper_stages`:
# 1 HuBERT features, 2 SSET codec + tokens, 3 (no TTS: nothing), 4 multitask LM (torchrun),
# 5 decoding, 6 scoring, 7 the paper's HuBERT-embedding vs EnCodec-token ASR experiment;
# stage 8 (below) trains the same LID/GID LM on SSET tokens and compares the two inputs.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
corpus_dir=corpus/commonvoice   # holds one folder per locale: <locale>/{train,dev,test}.tsv and <locale>/clips/
download=false                  # true: download the locales into corpus_dir first (needs internet)
locales=en,de,fr,es,zh-CN       # Common Voice locale codes; the LID classes are their ISO 639-1 languages
hubert_model=TencentGameMate/chinese-hubert-base  # the paper's; a multilingual wav2vec2-family model also works
hubert_layer=9
hubert_batch=16
device=cuda
ngpu=1                          # LM training processes (torchrun --nproc_per_node); the codec uses one GPU
nj=4                            # decodes side by side (decoding runs on the CPU)
decode_threads=4
conf=../../conf
data_dir=data
exp_dir=exp
tasks=lid,gid
lm_epochs=20                    # passes of each task over the training set: the LM's max_steps, given --ngpu
lm_overrides=""                 # KEY=VALUE words on lm_160m.yaml, e.g. "max_duration=300 grad_accum=2"
beam_size=10                    # stage 7 (ASR)
ctc_weight=0.5
asr_judge=""                    # stage 5: whisper:DIR, also an independent Whisper judge of the TTS audio (pip install -e ".[whisper]")
encodec_bandwidth=1.5           # stage 7: EnCodec kbps (1.5 = 2 books at 75 Hz)
encodec_checkpoint=""           # stage 7: encodec_24khz-d7cc33bc.th; empty: the encodec package downloads it
. ../../utils/parse_options.sh
. ../../utils/recipe_lib.sh

corpus=commonvoice
test_sets=test

if stage_on 0; then
  log "Stage 0: Common Voice ($locales) -> Lhotse manifests in $data_dir; each split combined over the locales"
  polyspeech prepare commonvoice "$corpus_dir" --subset "$locales" --data-dir "$data_dir" $([ "$download" = true ] && echo --download)
  for split in train dev test; do
    combine_cuts "$(cuts_of "$data_dir" "$split")" $(cuts_of "$data_dir" $(for l in ${locales//,/ }; do echo "${l}_$split"; done))
  done
fi

paper_stages

if stage_on 8; then
  log "Stage 8: the $tasks LM on SSET tokens instead of HuBERT embeddings -> $exp_dir/lm_multi_sset; both compared in $exp_dir/input_sset/RESULTS.md"
  train_paper_lm multi_sset "$data_dir/sset" "$tasks" data.speech_input=tokens data.speech_tokens=sset
  decode_lm "$exp_dir/lm_multi_sset" "$data_dir/sset" "$tasks" $test_sets
  score_lm "$exp_dir/lm_multi_sset" "$tasks" $test_sets
  mkdir -p "$exp_dir/input_sset"
  polyspeech compare "HuBERT embeddings=$exp_dir/lm_multi/scores.json" "SSET tokens=$exp_dir/lm_multi_sset/scores.json" \
    --title "LID / GID input: HuBERT layer-$hubert_layer embeddings vs SSET tokens" \
    --lm-dir "$exp_dir/lm_multi" --lm-dir "$exp_dir/lm_multi_sset" --out "$exp_dir/input_sset/RESULTS.md"
fi

log "Done (stages $stage..$stop_stage). Minutes per stage:"
stage_times now
