"""`polyspeech train lm`: the multitask decoder-only LM."""

from __future__ import annotations

from pathlib import Path

import typer

from polyspeech_cli.commands import cli_command, console


@cli_command
def train_lm(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config, e.g. conf/lm_tiny.yaml."),
    train_cuts: Path = typer.Option(..., "--train-cuts", help="Lhotse cuts with features/tokens (data/<corpus>_cuts_train.jsonl.gz)."),
    dev_cuts: Path = typer.Option(None, "--dev-cuts", help="Dev cuts for dev loss and greedy CER / accuracy."),
    exp_dir: Path = typer.Option(..., "--exp-dir", help="Output: vocab.json, config.yaml, ckpt/, train_log.csv, losses.png."),
    tasks: str = typer.Option(None, "--tasks", help="Comma-separated subset of asr,tts,lid,gid (overrides the config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --exp-dir."),
    max_steps: int = typer.Option(None, "--max-steps", help="Override max_steps."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N (overrides the config)."),
    speech_tokens: str = typer.Option(None, "--speech-tokens", help="cut.custom key of discrete speech tokens for TTS (sset, encodec, kmeans)."),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads."),
    vocab_only: bool = typer.Option(False, "--vocab-only", help="Only build <exp>/vocab.json (+ text.model for bpe) from the train cuts."),
    steps_share_of: str = typer.Option(None, "--steps-share-of", help="Single-task baseline: train for max_steps x this task's share "
                                       "in a multitask run over these comma-separated tasks (same config), e.g. asr,tts,lid,gid."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar (for logs)."),
) -> None:
    """Train the multitask (or, with one task, single-task) decoder-only LM.

    Multi-GPU / multi-process (DDP): torchrun --standalone --nproc_per_node N -m polyspeech_cli.lm --config ... (same options).
    """
    from polyspeech_cli.config import load_config
    from polyspeech_cli.lm.config import TrainConfig
    from polyspeech_cli.lm.train import train

    overrides = {"max_steps": max_steps, "device": device, "threads": threads}
    for key, value in (("tasks", tasks), ("steps_share_of", steps_share_of)):
        if value:
            overrides[key] = [t.strip() for t in value.split(",") if t.strip()]
    cfg = load_config(config, TrainConfig, overrides)
    if speech_tokens:
        cfg.data.speech_tokens = speech_tokens
    train(cfg, train_cuts, dev_cuts, exp_dir, resume=resume, log=console.print, progress=not no_progress, vocab_only=vocab_only)
