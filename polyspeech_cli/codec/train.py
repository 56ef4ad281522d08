"""Training loop of the SSET codec: random feature crops, MSE + commitment, EMA codebooks.

Deterministic given the seed: batch sampling, quantizer dropout and dead-code re-seeding all draw
from one generator whose state is checkpointed, so N steps + resume to 2N equals 2N steps.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyspeech_cli.codec.checkpoint import (
    model_state,
    read_checkpoint,
    save_checkpoint,
)
from polyspeech_cli.codec.config import CodecConfig
from polyspeech_cli.codec.data import FeatureSet, load_feature_set, read_cuts
from polyspeech_cli.codec.evaluate import codec_reconstruct, evaluate_codec
from polyspeech_cli.codec.model import SSETCodec
from polyspeech_cli.codec.plot import plot_reconstruction
from polyspeech_cli.console import console
from polyspeech_cli.config import save_config
from polyspeech_cli.training import optimizer_step, pick_device
from polyspeech_cli.errors import PolyspeechError

CHECKPOINT, MODEL, LOG, PLOT = "checkpoint.pt", "codec.pt", "log.csv", "reconstruction.png"


def sample_batch(data: FeatureSet, cfg: CodecConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """B random crops of `segment_frames`; utterances are drawn proportionally to their length."""
    lens = torch.tensor([len(f) for f in data.feats], dtype=torch.float)
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
    t = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


class CsvLog:
    """Appends rows to exp/log.csv (kept across --resume; rows past the resumed step are dropped)."""

    def __init__(self, path: Path, n_codebooks: int, resume_step: int):
        self.path = path
        self.fields = ["step", "split", "recon_mse", "rel_mse", "commit", "lr", "seconds"]
        self.fields += [f"usage_{i + 1}" for i in range(n_codebooks)] + [f"perplexity_{i + 1}" for i in range(n_codebooks)]
        rows = []
        if path.is_file() and resume_step > 0:
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, self.fields)
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow({k: row.get(k, "") for k in self.fields})


def _book_stats(row: dict[str, Any], usage: list[float], perplexity: list[float]) -> None:
    for i, (u, p) in enumerate(zip(usage, perplexity)):
        row[f"usage_{i + 1}"], row[f"perplexity_{i + 1}"] = round(u, 4), round(p, 1)


def train_codec(
    train_cuts: Path, dev_cuts: Path, exp_dir: Path, cfg: CodecConfig, resume: bool = False, stop_after: int | None = None
) -> dict[str, Any]:
    """Train (or resume) the codec; returns the last dev metrics.

    Writes exp_dir/{codec.pt, checkpoint.pt, log.csv, reconstruction.png, config.yaml}. `stop_after`
    ends this run early at that step (checkpointed; the LR schedule still spans cfg.steps), so a
    long training can be split into time-boxed runs with --resume.
    """
    exp_dir = Path(exp_dir)
    ckpt_path = exp_dir / CHECKPOINT
    state = None
    if ckpt_path.is_file():
        if not resume:
            raise PolyspeechError(f"{ckpt_path} exists: pass --resume to continue it, or choose another --exp-dir")
        state = read_checkpoint(ckpt_path)
        if state["step"] >= cfg.steps:
            console.print(f"[green]{exp_dir}: already trained for {state['step']} steps; nothing to do[/]")
            return state.get("dev_metrics", {})
    elif resume:
        console.print(f"[yellow]--resume: no checkpoint in {exp_dir}, starting from scratch[/]")

    train = load_feature_set(read_cuts(train_cuts), cfg.normalize, f"{train_cuts}: ", "loading train features")
    dev_cutset = read_cuts(dev_cuts).subset(first=cfg.max_dev_cuts) if cfg.max_dev_cuts else read_cuts(dev_cuts)
    dev = load_feature_set(dev_cutset, cfg.normalize, f"{dev_cuts}: ", "loading dev features")
    if dev.dim != train.dim:
        raise PolyspeechError(f"{dev_cuts}: feature dim {dev.dim} differs from the train set's {train.dim}")
    if state is not None and state["feat_dim"] != train.dim:
        raise PolyspeechError(f"{ckpt_path}: trained on {state['feat_dim']}-dim features, {train_cuts} has {train.dim}")
    if "fbank" in train.feature_type:
        console.print("[yellow]semantic stream: fbank features (the offline default; the paper's SSET uses HuBERT features)[/]")
    else:
        console.print(f"semantic stream: {train.feature_type} features ({train.dim}-dim)")
    device = pick_device(cfg.device)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16

    torch.manual_seed(cfg.seed)
    model = SSETCodec(train.dim, cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"])
        step = state["step"]
        console.print(f"resuming {exp_dir} at step {step}")
    meta = {"feat_dim": train.dim, "feature_type": train.feature_type, "frame_shift": train.frame_shift,
            "normalization": cfg.normalize, "token_frame_shift": train.frame_shift * cfg.downsample}
    exp_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, exp_dir / "config.yaml")
    log = CsvLog(exp_dir / LOG, cfg.n_codebooks, step)
    console.print(
        f"codec: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, {cfg.n_codebooks}x{cfg.codebook_size} codes, "
        f"downsample {cfg.downsample} ({meta['token_frame_shift'] * 1000:.0f} ms tokens); train {len(train.feats)} cuts "
        f"/ {train.num_frames} frames, dev {len(dev.feats)} cuts; device {device}{' +AMP' if use_amp else ''}"
    )

    def checkpoint(dev_metrics: dict[str, Any] | None) -> None:
        full = model_state(model, cfg, meta) | {"optimizer": opt.state_dict(), "rng": gen.get_state(), "step": step}
        if dev_metrics is not None:
            full["dev_metrics"] = dev_metrics
        save_checkpoint(ckpt_path, full)
        save_checkpoint(exp_dir / MODEL, model_state(model, cfg, meta) | {"step": step})

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
    end = min(cfg.steps, stop_after) if stop_after else cfg.steps
    while step < end:
        x, mask = sample_batch(train, cfg, gen)
        x, mask = x.to(device), mask.to(device)
        n_q = cfg.n_codebooks
        if cfg.quantizer_dropout > 0 and float(torch.rand((), generator=gen)) < cfg.quantizer_dropout:
            n_q = int(torch.randint(1, cfg.n_codebooks + 1, (), generator=gen))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
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
        if step % cfg.log_every == 0 or step == cfg.steps:
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
            checkpoint(metrics if step == cfg.steps else None)
    recons, _ = codec_reconstruct(model, dev.feats[:1], None, str(device))
    plot_reconstruction(dev.feats[0], recons[0], f"{dev.ids[0]} (step {step}, all {cfg.n_codebooks} books)", exp_dir / PLOT)
    if step < cfg.steps:
        console.print(f"[yellow]stopped at step {step} of {cfg.steps} (--stop-after); continue with --resume[/]")
    console.print(f"[green]wrote {exp_dir / MODEL}, {exp_dir / LOG}, {exp_dir / PLOT}[/]")
    return metrics
