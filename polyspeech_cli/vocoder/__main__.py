"""`python -m polyspeech_cli.vocoder --exp-dir exp/vocoder --cuts data/synth_cuts_test.jsonl.gz`:
dev/test metrics of a trained speech decoder (see evaluate.evaluate_exp), printed as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from polyspeech_cli.commands import cli_command


@cli_command
def main(
    exp_dir: Path = typer.Option(..., "--exp-dir", help="A `polyspeech train vocoder` output directory."),
    cuts: Path = typer.Option(..., "--cuts", help="Cuts with audio and the same feature type as training."),
    wav_dir: Path = typer.Option(None, "--wav-dir", help="Write resynthesised and copy-synthesised WAVs here."),
    max_cuts: int = typer.Option(100, "--max-cuts"),
    resynth_cuts: int = typer.Option(10, "--resynth-cuts", help="Utterances to run end to end through the vocoder."),
) -> None:
    from polyspeech_cli.vocoder.evaluate import evaluate_exp

    print(json.dumps(evaluate_exp(exp_dir, cuts, wav_dir, max_cuts, resynth_cuts), indent=1))


if __name__ == "__main__":
    typer.run(main)
