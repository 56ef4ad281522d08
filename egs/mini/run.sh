#!/usr/bin/env bash
# egs/mini: the embedded recipe on the generated multilingual eSpeak NG corpus.
# Runs offline on a laptop CPU. Every stage writes its artefacts to disk and skips finished work.
#
#   ./run.sh                          # all stages
#   ./run.sh --stage 1 --stop-stage 1 # one stage
#   ./run.sh --quick true             # a few-minute version (what CI runs)
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=100
quick=false           # tiny corpus and budgets, for smoke tests
train_utts=""         # training utterances per language (default: $conf/synth.yaml)
data_dir=data
exp_dir=exp
corpus_dir=corpus/synth
conf=../../conf        # the YAML configs (tiny CPU ones by default)
. ../../utils/parse_options.sh

log() { echo -e "$(date '+%Y-%m-%d %H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*"; }

synth_opts=(--config "$conf/synth.yaml")
if [ "$quick" = true ]; then
  synth_opts+=(--train-utts "${train_utts:-12}" --dev-utts 2 --test-utts 2)
elif [ -n "$train_utts" ]; then
  synth_opts+=(--train-utts "$train_utts")
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: generate the eSpeak NG corpus and prepare Lhotse manifests in $data_dir"
  polyspeech prepare synth --corpus-dir "$corpus_dir" --data-dir "$data_dir" "${synth_opts[@]}"
fi

log "Done (stages $stage..$stop_stage)."
