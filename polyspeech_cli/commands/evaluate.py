"""`polyspeech evaluate`: a trained LM exp dir on any prepared cut set or manifest.tsv folder
(a thin wrapper over polyspeech_cli/evaluate.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from polyspeech_cli.commands import cli_command, console
from polyspeech_cli.decode.options import ASR_LM_WEIGHT


@cli_command
def evaluate(
    exp_dir: Path = typer.Option(..., "--exp-dir", help="Trained LM exp dir (config.yaml, vocab.json, model.safetensors, features.json)."),
    cuts: Path | None = typer.Option(None, "--cuts", help="A prepared cut set, e.g. data/an4_cuts_test.jsonl.gz (audio; features are computed here)."),
    tsv: Path | None = typer.Option(None, "--tsv", help="Or a folder with manifest.tsv: prepared here as a test-only set into OUT/data."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Output: RESULTS.md, scores.json, decode_<task>_<set>/, data/."),
    tasks: str | None = typer.Option(None, "--tasks", help="Comma-separated subset of asr,tts,lid,gid (default: every task of the model "
                                     "that the set has labels for)."),
    codec: Path | None = typer.Option(None, "--codec", help="SSET codec dir/model for TTS and token-input LMs (default EXP/../codec)."),
    vocoder: Path | None = typer.Option(None, "--vocoder", help="TTS: speech decoder exp dir (default EXP/../vocoder)."),
    asr_judge: str | None = typer.Option(None, "--asr-judge", help="TTS intelligibility: an ASR LM exp dir, or whisper:DIR (a "
                                         "CTranslate2/faster-whisper or Hugging Face Whisper model dir; pip install -e '.[whisper]'), "
                                         "that transcribes the synthesized audio (its CER goes under the TTS result)."),
    ngram: Path | None = typer.Option(None, "--ngram", help="ASR: a character n-gram LM (`polyspeech train ngram`) fused into joint "
                                      "CTC/attention beam search, for the model's and the judge's ASR."),
    lm_weight: float = typer.Option(ASR_LM_WEIGHT, "--lm-weight", help="Weight of the --ngram log probability (egs/mini's dev choice)."),
) -> None:
    """Evaluate a trained LM on a set: features as the model's features.json says, every task it has labels for
    decoded and scored -> OUT/RESULTS.md + OUT/scores.json."""
    from polyspeech_cli.evaluate import EvaluateOptions
    from polyspeech_cli.evaluate import evaluate as run

    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks is not None else None
    run(EvaluateOptions(exp_dir=exp_dir, out_dir=out_dir, cuts=cuts, tsv=tsv, tasks=task_list, codec=codec, vocoder=vocoder,
                        asr_judge=asr_judge, ngram=ngram, lm_weight=lm_weight), log=console.print)
