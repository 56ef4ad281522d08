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
    stop_at: int = typer.Option(None, "--stop-at", help="End this run at this step (checkpointed); continue later with --resume."),
    patience: int = typer.Option(None, "--patience", help="Single-task early stopping: stop after this many dev evaluations "
                                 "without a new best and keep the best model (max_steps is the cap); overrides the config."),
    eval_every: int = typer.Option(None, "--eval-every", help="Dev greedy CER / accuracy every this many steps; overrides the config."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar (for logs)."),
) -> None:
    """Train the multitask (or, with one task, single-task) decoder-only LM.

    Multi-GPU / multi-process (DDP): torchrun --standalone --nproc_per_node N -m polyspeech_cli train lm --config ... (same options).
    """
    from polyspeech_cli.config import load_config
    from polyspeech_cli.lm.config import TrainConfig
    from polyspeech_cli.lm.train import train

    overrides = {"max_steps": max_steps, "device": device, "threads": threads, "patience": patience, "eval_every": eval_every}
    for key, value in (("tasks", tasks), ("steps_share_of", steps_share_of)):
        if value:
            overrides[key] = [t.strip() for t in value.split(",") if t.strip()]
    cfg = load_config(config, TrainConfig, overrides)
    if speech_tokens:
        cfg.data.speech_tokens = speech_tokens
    train(cfg, train_cuts, dev_cuts, exp_dir, resume=resume, log=console.print, progress=not no_progress, vocab_only=vocab_only, stop_at=stop_at)


@cli_command
def best_lm(
    exp_dirs: list[Path] = typer.Argument(..., help="LM exp dirs trained with --dev-cuts (their train_log.csv)."),
    task: str = typer.Option(..., "--task", help="asr, tts, lid or gid: the task whose dev error decides."),
) -> None:
    """Print the LM exp dir whose kept model has the lowest dev error on a task (chosen on dev, never on test;
    ties: the first named). The recipes' TTS judge: `polyspeech best-lm --task asr exp/lm_asr exp/lm_multi`."""
    from polyspeech_cli.lm.summary import best_run

    typer.echo(best_run(exp_dirs, task))


@cli_command
def bench_train(
    config: Path = typer.Option(..., "--config", "-c", help="LM YAML config, e.g. conf/lm_tiny.yaml."),
    train_cuts: Path = typer.Option(..., "--train-cuts", help="Cuts with features (and tokens for TTS), as for `train lm`."),
    tasks: str = typer.Option(None, "--tasks", help="Comma-separated tasks (overrides the config)."),
    speech_tokens: str = typer.Option(None, "--speech-tokens", help="cut.custom key of TTS speech tokens (sset, ...)."),
    precisions: str = typer.Option("fp32,bf16", "--precisions", help="Comma-separated: fp32, bf16, fp16 (autocast)."),
    threads: str = typer.Option("1,2", "--threads", help="Comma-separated CPU thread counts, one variant each."),
    lanes: bool = typer.Option(True, "--lanes/--no-lanes", help="Also run 2 processes of 1 thread side by side."),
    steps: int = typer.Option(20, "--steps", help="Measured steps per variant (after the warm-up)."),
    warmup: int = typer.Option(3, "--warmup", help="Unmeasured steps first."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda (overrides the config)."),
    out: Path = typer.Option(None, "--out", help="Write the JSON report here (and the markdown table next to it)."),
) -> None:
    """Training throughput of the LM: MFU against the measured matmul peak, tokens/s, padding, data wait, RSS."""
    from polyspeech_cli.errors import require_file
    from polyspeech_cli.fileio import atomic_write_text
    from polyspeech_cli.lm.bench import bench_train as run, markdown

    require_file(config, "LM config", "pass --config conf/lm_tiny.yaml")
    require_file(train_cuts, "train cuts", "run `polyspeech extract-tokens --type fbank` first")
    overrides = {"device": device, "speech_tokens": speech_tokens}
    if tasks:
        overrides["tasks"] = [t.strip() for t in tasks.split(",") if t.strip()]
    report = run(config, train_cuts, [p.strip() for p in precisions.split(",")], [int(n) for n in threads.split(",")], steps, warmup,
                 lanes, {k: v for k, v in overrides.items() if v is not None}, log=console.print)
    table = markdown(report)
    typer.echo(table)
    if out:
        import json

        atomic_write_text(out, json.dumps(report, indent=1) + "\n")
        atomic_write_text(out.with_suffix(".md"), table)


@cli_command
def bench_all(
    train_cuts: Path = typer.Option(..., "--train-cuts", help="Cuts with fbank features for the training benchmark."),
    cuts: Path = typer.Option(..., "--cuts", help="Cuts with audio (and features) for tokenisation and decoding, e.g. the dev set."),
    out_dir: Path = typer.Option(Path("bench"), "--out-dir", help="Writes bench.json and bench.md here."),
    config: Path = typer.Option(Path("conf/lm_tiny.yaml"), "--config", "-c", help="LM config (training; decoding without --exp-dir)."),
    codec_config: Path = typer.Option(Path("conf/codec_tiny.yaml"), "--codec-config", help="Codec config when no --codec."),
    exp_dir: Path = typer.Option(None, "--exp-dir", help="A trained LM exp dir: real TTS lengths (default: random weights)."),
    codec: Path = typer.Option(None, "--codec", help="SSET codec model (file or exp dir)."),
    vocoder: Path = typer.Option(None, "--vocoder", help="Speech decoder exp dir."),
    train_steps: int = typer.Option(10, "--train-steps", help="Measured training steps per variant."),
    tasks: str = typer.Option(None, "--tasks", help="Training tasks (default: the config's)."),
) -> None:
    """Training, tokenisation and decoding benchmarks in one report (bench.json + bench.md)."""
    from polyspeech_cli.bench_all import bench_all as run
    from polyspeech_cli.errors import require_file

    # Every input up front: a missing one is one line now, not a traceback after minutes of training steps.
    require_file(config, "LM config", "pass -c/--config an LM config; the path is relative to the current directory, "
                 "e.g. -c ../../conf/lm_tiny.yaml from a recipe dir egs/NAME")
    if codec is None:
        require_file(codec_config, "codec config", "pass --codec-config a codec config, relative to the current directory, e.g. "
                     "../../conf/codec_tiny.yaml from a recipe dir egs/NAME; or --codec a trained codec")
    require_file(train_cuts, "train cuts", "run `polyspeech extract-tokens --type fbank` first")
    require_file(cuts, "cuts", "pass --cuts a cut manifest with audio and features, e.g. the dev set")
    task_list = [t.strip() for t in tasks.split(",")] if tasks else None
    run(train_cuts, cuts, out_dir, config, codec_config, exp_dir, codec, vocoder, train_steps, task_list, log=console.print)
    typer.echo((out_dir / "bench.md").read_text(encoding="utf-8"))


@cli_command
def train_ngram(
    train_cuts: Path = typer.Option(..., "--train-cuts", help="Cuts whose transcripts the n-gram learns (the ASR training cuts)."),
    out: Path = typer.Option(..., "--out", help="Output: the n-gram file (e.g. exp/ngram/ngram.json) and OUT.done, its stamp."),
    order: int = typer.Option(6, "--order", help="n: characters of history + 1 (6 was best on egs/mini's dev split)."),
) -> None:
    """Train a character n-gram LM on the training transcripts, for `decode --ngram OUT --lm-weight W`
    (ESPnet's shallow fusion of an external LM into joint CTC/attention beam search)."""
    from polyspeech_cli.lm.ngram import train_ngram as run

    run(train_cuts, out, order, log=console.print)
