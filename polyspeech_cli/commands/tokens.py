"""`polyspeech extract-tokens`: features and speech tokens for a cut set."""

from __future__ import annotations

from pathlib import Path

import typer

from polyspeech_cli.commands import cli_command


@cli_command
def extract_tokens(
    cuts: list[Path] = typer.Argument(..., help="Input cuts manifest(s), e.g. data/synth_cuts_train.jsonl.gz (k-means fits on the first)."),
    type: str = typer.Option(..., "--type", "-t", help="fbank | hubert | encodec | kmeans | sset"),
    out_dir: Path | None = typer.Option(None, "--out-dir", "-o", help="Output dir (default data/<type>/); manifests keep their file names."),
    model: str | None = typer.Option(None, help="hubert: local model dir or cached hub id (facebook/hubert-base-ls960, TencentGameMate/chinese-hubert-base)."),
    layer: int = typer.Option(9, help="hubert: hidden layer to take (0 = CNN output)."),
    checkpoint: Path | None = typer.Option(None, help="sset: codec model (exp/codec/model.safetensors, or the exp dir); encodec: encodec_24khz-d7cc33bc.th."),
    bandwidth: float = typer.Option(6.0, help="encodec: kbps (1.5, 3, 6, 12, 24 → 2, 4, 8, 16, 32 codebooks)."),
    k: int = typer.Option(2048, "--k", help="kmeans: number of clusters."),
    centroids: Path | None = typer.Option(None, help="kmeans: centroids file (default <out-dir>/kmeans_centroids.safetensors; fitted if missing)."),
    num_codebooks: int | None = typer.Option(None, help="sset: keep only the first N codebooks (default all)."),
    num_mel_bins: int = typer.Option(80, help="fbank: number of mel bins."),
    batch_size: int = typer.Option(8, help="hubert: utterances per forward pass."),
    device: str = typer.Option("auto", help="auto (cuda when available) | cpu | cuda."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Drop cuts whose computed features hold NaN/inf (and report how many) instead of stopping."),
) -> None:
    """Extract fbank / HuBERT features or EnCodec / k-means / SSET tokens for cut sets."""
    from polyspeech_cli.tokens.extract import ExtractOptions, extract

    opts = ExtractOptions(type=type, out_dir=(out_dir or Path("data") / type).resolve(), model=model, layer=layer, checkpoint=checkpoint,
                          bandwidth=bandwidth, k=k, centroids=centroids, num_codebooks=num_codebooks, num_mel_bins=num_mel_bins, batch_size=batch_size,
                          device=device, skip_bad=skip_bad)
    extract(cuts, opts)


bench_app = typer.Typer(help="Benchmarks (speed on one CPU thread).", no_args_is_help=True)


@bench_app.command("tokens")
@cli_command
def bench_tokens(
    cuts: Path = typer.Argument(..., help="Cuts with audio (e.g. data/synth_cuts_dev.jsonl.gz)."),
    checkpoint: Path | None = typer.Option(None, help="SSET codec checkpoint (default: random weights of --config's shape)."),
    config: Path = typer.Option(Path("conf/codec_tiny.yaml"), "--config", "-c", help="Codec config when no --checkpoint."),
    max_cuts: int = typer.Option(100, help="Benchmark on the first N cuts."),
    out: Path | None = typer.Option(None, help="Also write the numbers to this JSON file."),
) -> None:
    """fbank and SSET tokenisation real-time factor on one CPU thread (reported, target RTF <= 0.01)."""
    from polyspeech_cli.tokens.bench import bench_tokens as run

    run(cuts, checkpoint, config, max_cuts, out)
