#!/usr/bin/env bash
# egs/aishell: Mandarin ASR + TTS on AISHELL-1 (the paper's language) with the paper-size LM.
# A GPU recipe: README.md beside it lists the stages and what they cost (GPU-hours, GPU memory,
# disk: estimates) and which of the paper's numbers it targets.
#
#   ./run.sh --corpus-dir /data/aishell --ngpu 4           # every stage
#   ./run.sh --corpus-dir /data/aishell --download true    # fetch AISHELL-1 (openslr SLR33, ~15 GB) first
#   ./run.sh --corpus-dir /data/aishell --stage 1 --stop-stage 1
#
# Stage 0 (below) prepares the corpus; stages 1-7 are utils/recipe_lib.sh `paper_stages`:
# 1 HuBERT features, 2 SSET codec + tokens, 3 speech decoder, 4 multitask LM (torchrun),
# 5 decoding, 6 scoring, 7 the paper's HuBERT-embedding vs EnCodec-token ASR experiment.
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
corpus_dir=corpus/aishell   # holds data_aishell/ and resource_aishell/
download=false              # true: download AISHELL-1 into corpus_dir first (needs internet)
hubert_model=TencentGameMate/chinese-hubert-base  # the paper's; or a local save_pretrained dir
hubert_layer=9
hubert_batch=16             # utterances per HuBERT forward pass
device=cuda                 # cuda | cpu (cpu: only for tiny test corpora)
ngpu=1                      # LM training processes (torchrun --nproc_per_node); the codec and speech decoder use one GPU
nj=4                        # decodes side by side (decoding runs on the CPU)
decode_threads=4            # torch CPU threads per decode
conf=../../conf             # lm_160m.yaml, codec_hubert.yaml, vocoder_hubert.yaml are read from here
data_dir=data
exp_dir=exp
tasks=asr,tts
lm_epochs=50                # passes of each task over the training set: the LM's max_steps, given --ngpu
lm_overrides=""             # KEY=VALUE words on lm_160m.yaml, e.g. "max_duration=300 grad_accum=2" for 40 GB GPUs
beam_size=10
ctc_weight=0.5              # joint CTC/attention weight of ASR beam search (not tuned: choose it on dev)
asr_judge=""                    # stage 5: whisper:DIR, also an independent Whisper judge of the TTS audio (pip install -e ".[whisper]")
encodec_bandwidth=1.5       # stage 7: EnCodec kbps (1.5 = 2 books at 75 Hz)
encodec_checkpoint=""       # stage 7: encodec_24khz-d7cc33bc.th; empty: the encodec package downloads it
. ../../utils/parse_options.sh
. ../../utils/recipe_lib.sh

corpus=aishell
test_sets=test

if stage_on 0; then
  log "Stage 0: AISHELL-1 -> Lhotse manifests in $data_dir (Lhotse's recipe; language zh, gender from speaker.info)"
  polyspeech prepare aishell "$corpus_dir" --data-dir "$data_dir" $([ "$download" = true ] && echo --download)
fi

paper_stages

log "Done (stages $stage..$stop_stage). Minutes per stage:"
stage_times now
