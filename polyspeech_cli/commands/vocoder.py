"""`polyspeech train vocoder`: the speech decoder (features + speaker prompt → mel → waveform)."""

from __future__ import annotations

from pathlib import Path

import typer

from polyspeech_cli.commands import cli_command, console


@cli_command
def train_vocoder(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config, e.g. conf/vocoder_tiny.yaml."),
    train_cuts: Path = typer.Option(..., "--train-cuts", help="Lhotse cuts with audio and features (from `extract-tokens --type fbank|hubert`)."),
    dev_cuts: Path = typer.Option(None, "--dev-cuts", help="Dev cuts: mel L1/MSE, speaker similarity, dev_mel.png."),
    exp_dir: Path = typer.Option(..., "--exp-dir", help="Output: config.yaml, ckpt/, model.safetensors, train_log.csv, dev_mel.png."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --exp-dir (a finished identical run is skipped)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Override max_steps (decoder steps)."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N (overrides the config)."),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads."),
    stop_at: int = typer.Option(None, "--stop-at", help="End this run at this step (checkpointed); continue later with --resume."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar (for logs)."),
) -> None:
    """Train the speech decoder: semantic features + a prompt's speaker embedding → mel spectrogram.

    Waveforms come from Griffin-Lim (default) or, with `vocoder: hifigan` in the config, a HiFi-GAN
    trained after the decoder. Use the result with polyspeech_cli.vocoder.synthesize.features_to_wave.
    """
    from polyspeech_cli.config import load_config
    from polyspeech_cli.vocoder.config import VocoderConfig
    from polyspeech_cli.vocoder.train import train

    cfg = load_config(config, VocoderConfig, {"max_steps": max_steps, "device": device, "threads": threads})
    train(cfg, train_cuts, dev_cuts, exp_dir, resume=resume, log=console.print, progress=not no_progress, stop_at=stop_at)


@cli_command
def vocoder_eval(
    exp_dir: Path = typer.Option(..., "--exp-dir", help="A `polyspeech train vocoder` output directory."),
    cuts: Path = typer.Option(..., "--cuts", help="Cuts with audio and the same feature type as training."),
    wav_dir: Path = typer.Option(None, "--wav-dir", help="Write resynthesised and copy-synthesised WAVs here."),
    max_cuts: int = typer.Option(100, "--max-cuts"),
    resynth_cuts: int = typer.Option(10, "--resynth-cuts", help="Utterances to run end to end through the vocoder."),
) -> None:
    """Dev/test metrics of a trained speech decoder (mel L1/MSE, speaker similarity; see vocoder/evaluate.py), printed as JSON."""
    import json

    from polyspeech_cli.vocoder.evaluate import evaluate_exp

    typer.echo(json.dumps(evaluate_exp(exp_dir, cuts, wav_dir, max_cuts, resynth_cuts), indent=1))
