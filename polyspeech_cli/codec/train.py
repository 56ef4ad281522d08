"""Training loop of the SSET codec: random feature crops, MSE + commitment, EMA codebooks.

Deterministic given the seed: batch sampling, quantizer dropout and dead-code re-seeding all draw
from one generator whose state is checkpointed, so N steps + resume to 2N equals 2N steps.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyspeech_cli.codec.checkpoint import MODEL, read_checkpoint, save_model
from polyspeech_cli.codec.config import CodecConfig
from polyspeech_cli.codec.data import FeatureSet, load_feature_set, stream_feature_set
from polyspeech_cli.data.manifest import read_cuts
from polyspeech_cli.codec.evaluate import codec_reconstruct, evaluate_codec
from polyspeech_cli.codec.model import SSETCodec
from polyspeech_cli.codec.plot import plot_reconstruction
from polyspeech_cli.console import console
from polyspeech_cli.config import save_config
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.training import (
    CsvLog,
    adamw,
    autocast_dtype,
    check_resume,
    exp_dir_lock,
    list_checkpoints,
    mark_run,
    optimizer_step,
    pick_device,
    run_key,
    save_checkpoint,
)

LOG, PLOT = "train_log.csv", "reconstruction.png"


def sample_batch(data: FeatureSet, cfg: CodecConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """B random crops of `segment_frames`; utterances are drawn proportionally to their length."""
    lens = torch.from_numpy(data.lens).float()  # metadata: data.feats[i] loads cut i from storage
    idx = torch.multinomial(lens, cfg.batch_size, replacement=True, generator=gen).tolist()
    seg = min(cfg.segment_frames, int(lens[idx].max()))
    x = torch.zeros(cfg.batch_size, seg, data.dim)
    mask = torch.zeros(cfg.batch_size, seg, dtype=torch.bool)
    for b, i in enumerate(idx):
        f = data.feats[i]
        start = int(torch.randint(0, max(len(f) - seg, 0) + 1, (1,), generator=gen))
        crop = torch.from_numpy(f[start : start + seg])
        x[b, : len(crop)], mask[b, : len(crop)] = crop, True
    return x, mask


def lr_at(step: int, cfg: CodecConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def log_fields(n_codebooks: int) -> list[str]:
    fields = ["step", "split", "recon_mse", "rel_mse", "commit", "lr", "seconds"]
    return fields + [f"usage_{i + 1}" for i in range(n_codebooks)] + [f"perplexity_{i + 1}" for i in range(n_codebooks)]


def _book_stats(row: dict[str, Any], usage: list[float], perplexity: list[float]) -> None:
    for i, (u, p) in enumerate(zip(usage, perplexity)):
        row[f"usage_{i + 1}"], row[f"perplexity_{i + 1}"] = round(u, 4), round(p, 1)


def train_codec(
    train_cuts: Path, dev_cuts: Path, exp_dir: Path, cfg: CodecConfig, resume: bool = False, stop_at: int | None = None
) -> dict[str, Any]:
    """Train (or resume) the codec; returns the last dev metrics.

    Writes exp_dir/{config.yaml, run.json, ckpt/step-N.safetensors, model.safetensors, train_log.csv,
    reconstruction.png}. `stop_at` ends this run early at that step (checkpointed; the LR schedule
    still spans cfg.max_steps), so a long training can be split into time-boxed runs with --resume.
    Runs holding `exp_dir_lock(exp_dir)`: a second training on the same exp dir is refused.
    """
    with exp_dir_lock(Path(exp_dir)):
        return _train_codec(train_cuts, dev_cuts, exp_dir, cfg, resume, stop_at)


def _train_codec(
    train_cuts: Path, dev_cuts: Path, exp_dir: Path, cfg: CodecConfig, resume: bool, stop_at: int | None
) -> dict[str, Any]:
    exp_dir = Path(exp_dir)
    key = run_key(cfg, train_cuts)
    ckpts = list_checkpoints(exp_dir)
    decision = check_resume(exp_dir, key, resume, ckpts[-1] if ckpts else None)
    if decision == "skip":
        console.print(f"[green]{exp_dir}: already trained for {cfg.max_steps} steps with this config and data; nothing to do[/]")
        return read_checkpoint(ckpts[-1]).get("dev_metrics", {})
    state = read_checkpoint(ckpts[-1]) if decision == "continue" else None
    if resume and state is None:
        console.print(f"[yellow]--resume: no checkpoint in {exp_dir / 'ckpt'}, starting from scratch[/]")

    train = stream_feature_set(train_cuts, cfg.normalize, cache_mb=cfg.cache_mb)  # loaded per batch, through a bounded cache
    dev_cutset = read_cuts(dev_cuts).subset(first=cfg.max_dev_cuts) if cfg.max_dev_cuts else read_cuts(dev_cuts)
    dev = load_feature_set(dev_cutset, cfg.normalize, f"{dev_cuts}: ", "loading dev features")
    if dev.dim != train.dim:
        raise PolyspeechError(f"{dev_cuts}: feature dim {dev.dim} differs from the train set's {train.dim}")
    if state is not None and state["feat_dim"] != train.dim:
        raise PolyspeechError(f"{ckpts[-1]}: trained on {state['feat_dim']}-dim features, {train_cuts} has {train.dim}")
    if "fbank" in train.feature_type:
        console.print("[yellow]semantic stream: fbank features (the offline default; the paper's SSET uses HuBERT features)[/]")
    else:
        console.print(f"semantic stream: {train.feature_type} features ({train.dim}-dim)")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    amp = autocast_dtype(cfg.precision, device)

    torch.manual_seed(cfg.seed)
    model = SSETCodec(train.dim, cfg).to(device)
    opt = adamw(model, cfg.lr, cfg.weight_decay, decay_vectors=True)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"])
        scaler.load_state_dict(state["scaler"])
        step = state["step"]
        console.print(f"resuming {exp_dir} at step {step}")
    meta = {"feat_dim": train.dim, "feature_type": train.feature_type, "frame_shift": train.frame_shift,
            "normalization": cfg.normalize, "token_frame_shift": train.frame_shift * cfg.downsample}
    exp_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, exp_dir / "config.yaml")
    mark_run(exp_dir, key, finished=False)
    log = CsvLog(exp_dir / LOG, log_fields(cfg.n_codebooks), fresh=state is None, keep_until=step)
    console.print(
        f"codec: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, {cfg.n_codebooks}x{cfg.codebook_size} codes, "
        f"downsample {cfg.downsample} ({meta['token_frame_shift'] * 1000:.0f} ms tokens); train {len(train.feats)} cuts "
        f"/ {train.num_frames} frames, dev {len(dev.feats)} cuts; device {device}{f' +{amp}' if amp is not None else ''}"
    )

    def checkpoint(dev_metrics: dict[str, Any] | None) -> None:
        full = {"kind": "sset_codec", "model": model.state_dict(), "config": dataclasses.asdict(cfg), **meta,
                "optimizer": opt.state_dict(), "scaler": scaler.state_dict(), "rng": gen.get_state(), "step": step}
        if dev_metrics is not None:
            full["dev_metrics"] = {k: v for k, v in dev_metrics.items()}
        save_checkpoint(exp_dir, step, full, cfg.keep_last)

    def evaluate() -> dict[str, Any]:
        m = evaluate_codec(model, dev.feats, str(device))
        row = {"step": step, "split": "dev", "rel_mse": round(m["rel_mse"], 5), "recon_mse": round(m["rel_mse"], 5)}
        _book_stats(row, m["usage"], m["perplexity"])  # type: ignore[arg-type]
        log.write(row)
        usage = " ".join(f"{u:.0%}" for u in m["usage"])  # type: ignore[union-attr]
        console.print(f"step {step:6d} [bold]dev[/] rel-MSE {m['rel_mse']:.4f} cos {m['cosine']:.3f} code usage {usage}")
        model.train()
        return m

    model.train()
    t0, window, codes_seen = time.time(), [], []
    metrics: dict[str, Any] = {}
    end = min(cfg.max_steps, stop_at) if stop_at else cfg.max_steps
    while step < end:
        x, mask = sample_batch(train, cfg, gen)
        x, mask = x.to(device), mask.to(device)
        n_q = cfg.n_codebooks
        if cfg.quantizer_dropout > 0 and float(torch.rand((), generator=gen)) < cfg.quantizer_dropout:
            n_q = int(torch.randint(1, cfg.n_codebooks + 1, (), generator=gen))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            y, codes, commit = model(x, mask, n_q=n_q, gen=gen)
        err = ((y.float() - x) ** 2).mean(-1)
        recon = (err * mask).sum() / mask.sum()
        loss = recon + cfg.commitment_weight * commit
        scaler.scale(loss).backward()
        optimizer_step(model, opt, scaler, cfg.grad_clip)
        step += 1
        window.append((recon.item(), commit.item()))
        if n_q == cfg.n_codebooks:
            zmask = mask[:, :: cfg.downsample][:, : codes.shape[1]]
            codes_seen.append(codes[zmask].cpu())
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            r, c = np.mean(window, axis=0)
            row = {"step": step, "split": "train", "recon_mse": round(float(r), 5), "commit": round(float(c), 5),
                   "lr": f"{lr_at(step - 1, cfg):.2e}", "seconds": round(time.time() - t0, 1)}
            if codes_seen:
                allc = torch.cat(codes_seen).numpy()
                from polyspeech_cli.codec.evaluate import usage_stats

                stats = [usage_stats(allc[:, i], cfg.codebook_size) for i in range(allc.shape[1])]
                _book_stats(row, [u for u, _ in stats], [p for _, p in stats])
            log.write(row)
            console.print(f"step {step:6d} train recon {r:.4f} commit {c:.4f} lr {row['lr']} ({row['seconds']} s)")
            window, codes_seen = [], []
        if step % cfg.eval_every == 0 or step == end:
            metrics = evaluate()
        if step % cfg.checkpoint_every == 0 or step == end:
            checkpoint(metrics if step == cfg.max_steps else None)
    recons, _ = codec_reconstruct(model, dev.feats[:1], None, str(device))
    plot_reconstruction(dev.feats[0], recons[0], f"{dev.ids[0]} (step {step}, all {cfg.n_codebooks} books)", exp_dir / PLOT)
    save_model(exp_dir / MODEL, model, cfg, meta, step)
    mark_run(exp_dir, key, finished=step >= cfg.max_steps, outputs=[exp_dir / MODEL], step=step)
    if step < cfg.max_steps:
        console.print(f"[yellow]stopped at step {step} of {cfg.max_steps} (--stop-at); continue with --resume[/]")
    console.print(f"[green]wrote {exp_dir / MODEL}, {exp_dir / LOG}, {exp_dir / PLOT}[/]")
    return metrics
