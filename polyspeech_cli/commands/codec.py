"""`polyspeech train codec` and `polyspeech codec-eval`: the SSET codec."""

from __future__ import annotations

from pathlib import Path

import typer

from polyspeech_cli.commands import cli_command


@cli_command
def train_codec(
    config: Path = typer.Option(Path("conf/codec_tiny.yaml"), "--config", "-c", help="Codec config YAML."),
    train_cuts: Path = typer.Option(..., "--train-cuts", help="Train cuts with continuous features (e.g. data/fbank/synth_cuts_train.jsonl.gz)."),
    dev_cuts: Path = typer.Option(..., "--dev-cuts", help="Dev cuts with the same features."),
    exp_dir: Path = typer.Option(Path("exp/codec"), "--exp-dir", help="Output: config.yaml, ckpt/, model.safetensors, train_log.csv, reconstruction.png."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --exp-dir (a finished identical run is skipped)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Override max_steps."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N (overrides the config)."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads."),
    stop_at: int | None = typer.Option(None, "--stop-at", help="End this run at this step (checkpointed); continue later with --resume."),
) -> None:
    """Train the SSET codec (conv encoder-decoder with residual VQ) on continuous features."""
    from polyspeech_cli.codec.config import CodecConfig
    from polyspeech_cli.codec.train import train_codec as run
    from polyspeech_cli.config import load_config

    cfg = load_config(config, CodecConfig, {"max_steps": max_steps, "device": device, "threads": threads})
    run(train_cuts, dev_cuts, exp_dir, cfg, resume=resume, stop_at=stop_at)


@cli_command
def codec_eval(
    dev_cuts: Path = typer.Argument(..., help="Dev cuts with continuous features."),
    checkpoint: Path = typer.Option(Path("exp/codec/model.safetensors"), help="SSET codec model (or its exp dir)."),
    kmeans: Path | None = typer.Option(None, help="k-means centroids (from extract-tokens --type kmeans); or --train-cuts to fit them."),
    train_cuts: Path | None = typer.Option(None, help="Fit k-means (K = the codec's codebook size) on these cuts when --kmeans is not given, "
                                            "and (downsampling codecs) k-means at the codec's token rate."),
    out: Path | None = typer.Option(None, help="JSON result (default <checkpoint dir>/codec_eval.json)."),
    max_cuts: int | None = typer.Option(None, help="Evaluate on the first N dev cuts only."),
) -> None:
    """Compare feature reconstruction: SSET 1 codebook, SSET all codebooks, k-means with the same K (and at SSET's token rate)."""
    from polyspeech_cli.codec.checkpoint import model_path
    from polyspeech_cli.tokens.compare import compare

    checkpoint = model_path(checkpoint)
    compare(dev_cuts, checkpoint, kmeans, train_cuts, out or checkpoint.parent / "codec_eval.json", max_cuts)
