"""`polyspeech train codec` and `polyspeech codec-eval`: the SSET codec."""

from __future__ import annotations

from pathlib import Path

import typer

from polyspeech_cli.commands import cli_command


@cli_command
def train_codec(
    train_cuts: Path = typer.Argument(..., help="Train cuts with continuous features (e.g. data/fbank/synth_cuts_train.jsonl.gz)."),
    dev_cuts: Path = typer.Argument(..., help="Dev cuts with the same features."),
    config: Path = typer.Option(Path("conf/codec_tiny.yaml"), "--config", "-c", help="Codec config YAML."),
    exp_dir: Path = typer.Option(Path("exp/codec"), help="Where checkpoints, log.csv and the reconstruction PNG go."),
    resume: bool = typer.Option(False, "--resume", help="Continue from <exp-dir>/checkpoint.pt."),
    steps: int | None = typer.Option(None, help="Override the config's number of steps."),
    device: str | None = typer.Option(None, help="Override the config's device (auto | cpu | cuda)."),
    stop_after: int | None = typer.Option(None, help="End this run at this step (checkpointed); continue later with --resume."),
) -> None:
    """Train the SSET codec (conv encoder-decoder with residual VQ) on continuous features."""
    from polyspeech_cli.codec.config import CodecConfig
    from polyspeech_cli.codec.train import train_codec as run
    from polyspeech_cli.config import load_config

    cfg = load_config(config, CodecConfig, {"steps": steps, "device": device})
    run(train_cuts, dev_cuts, exp_dir, cfg, resume=resume, stop_after=stop_after)


@cli_command
def codec_eval(
    dev_cuts: Path = typer.Argument(..., help="Dev cuts with continuous features."),
    checkpoint: Path = typer.Option(Path("exp/codec/codec.pt"), help="SSET codec checkpoint."),
    kmeans: Path | None = typer.Option(None, help="k-means centroids (from extract-tokens --type kmeans); or --train-cuts to fit them."),
    train_cuts: Path | None = typer.Option(None, help="Fit k-means (K = the codec's codebook size) on these cuts when --kmeans is not given, "
                                            "and (downsampling codecs) k-means at the codec's token rate."),
    out: Path | None = typer.Option(None, help="JSON result (default <checkpoint dir>/codec_eval.json)."),
    max_cuts: int | None = typer.Option(None, help="Evaluate on the first N dev cuts only."),
) -> None:
    """Compare feature reconstruction: SSET 1 codebook, SSET all codebooks, k-means with the same K (and at SSET's token rate)."""
    from polyspeech_cli.codec.compare import compare

    compare(dev_cuts, checkpoint, kmeans, train_cuts, out or checkpoint.parent / "codec_eval.json", max_cuts)
