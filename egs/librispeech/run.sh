#!/usr/bin/env bash
# egs/librispeech: English ASR + TTS on LibriSpeech (960 h by default) with the paper-size LM.
# A GPU recipe: README.md beside it lists the stages and what they cost (GPU-hours, GPU memory,
# disk: estimates) and which of the paper's numbers it targets.
#
#   ./run.sh --corpus-dir /data/librispeech --ngpu 8                        # every stage
#   ./run.sh --corpus-dir /data/librispeech --train-parts train-clean-100   # the 100 h subset
#   ./run.sh --corpus-dir /data/librispeech --stage 1 --stop-stage 1
#
# Stage 0 (below) prepares the corpus; stages 1-7 are utils/recipe_lib.sh `paper_stages`:
# 1 HuBERT features, 2 SSET codec + tokens, 3 speech decoder, 4 multitask LM (torchrun),
# 5 decoding, 6 scoring, 7 the paper's HuBERT-embedding vs EnCodec-token ASR experiment.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
corpus_dir=corpus/librispeech   # holds LibriSpeech/ (or is it): train-clean-100/ ... test-other/, SPEAKERS.TXT
download=false                  # true: download the parts below into corpus_dir first (openslr SLR12; 960 h ~ 60 GB)
train_parts="train-clean-100 train-clean-360 train-other-500"  # combined into the set `train`
dev_parts="dev-clean dev-other"                                # combined into `dev`, as ESPnet does
test_sets="test-clean test-other"                              # decoded and scored one by one
hubert_model=facebook/hubert-base-ls960
hubert_layer=9
hubert_batch=16
device=cuda
ngpu=1                          # LM training processes (torchrun --nproc_per_node); the codec and speech decoder use one GPU
nj=4                            # decodes side by side (decoding runs on the CPU)
decode_threads=4
conf=../../conf
data_dir=data
exp_dir=exp
tasks=asr,tts
lm_epochs=30                    # passes of each task over the training set: the LM's max_steps, given --ngpu
lm_overrides=""                 # KEY=VALUE words on lm_160m.yaml, e.g. "max_duration=300 grad_accum=2"
beam_size=10
ctc_weight=0.5                  # not tuned: choose it on dev
asr_judge=""                    # stage 5: whisper:DIR, also an independent Whisper judge of the TTS audio (pip install -e ".[whisper]")
encodec_bandwidth=1.5           # stage 7: EnCodec kbps (1.5 = 2 books at 75 Hz)
encodec_checkpoint=""           # stage 7: encodec_24khz-d7cc33bc.th; empty: the encodec package downloads it
. ../../utils/parse_options.sh
. ../../utils/recipe_lib.sh

corpus=librispeech

if stage_on 0; then
  parts="$train_parts $dev_parts $test_sets"
  log "Stage 0: LibriSpeech ($parts) -> Lhotse manifests in $data_dir; train = $train_parts; dev = $dev_parts"
  polyspeech prepare librispeech "$corpus_dir" --subset "$(echo $parts | tr ' ' ,)" --data-dir "$data_dir" \
    $([ "$download" = true ] && echo --download)
  combine_cuts "$(cuts_of "$data_dir" train)" $(cuts_of "$data_dir" $train_parts)
  combine_cuts "$(cuts_of "$data_dir" dev)" $(cuts_of "$data_dir" $dev_parts)
fi

paper_stages

log "Done (stages $stage..$stop_stage). Minutes per stage:"
stage_times now
