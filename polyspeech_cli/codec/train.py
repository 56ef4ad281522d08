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

from polyspeech_cli.codec.checkpoint import KIND, MODEL, read_checkpoint, save_model
from polyspeech_cli.codec.config import CodecConfig
from polyspeech_cli.codec.data import FeatureSet, load_feature_set, stream_feature_set
from polyspeech_cli.data.manifest import read_cuts
from polyspeech_cli.codec.evaluate import codec_reconstruct, evaluate_codec
from polyspeech_cli.codec.model import SSETCodec
from polyspeech_cli.codec.plot import plot_reconstruction
from polyspeech_cli.console import console
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.training import CsvLog, adamw, exp_dir_lock, optimizer_step, run_key
from polyspeech_cli.training_loop import Dev, Log, Loop, finish_loop, finish_run, resume_decision, run_loop, save_state, setup_device, start_run

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
    train_cuts: Path, dev_cuts: Path, exp_dir: Path, cfg: CodecConfig, resume: bool = False, stop_at: int | None = None,
    log: Log = console.print,
) -> dict[str, Any]:
    """Train (or resume) the codec; returns the last dev metrics.

    Writes exp_dir/{config.yaml, run.json, ckpt/step-N.safetensors, model.safetensors, train_log.csv,
    reconstruction.png}. `stop_at` ends this run early at that step (checkpointed; the LR schedule
    still spans cfg.max_steps), so a long training can be split into time-boxed runs with --resume.
    Runs holding `exp_dir_lock(exp_dir)`: a second training on the same exp dir is refused.
    """
    with exp_dir_lock(Path(exp_dir)):
        return _train_codec(train_cuts, dev_cuts, exp_dir, cfg, resume, stop_at, log)


def _train_codec(train_cuts: Path, dev_cuts: Path, exp_dir: Path, cfg: CodecConfig, resume: bool, stop_at: int | None,
                 log: Log) -> dict[str, Any]:
    exp_dir = Path(exp_dir)
    key = run_key(cfg, train_cuts)
    decision, ckpts = resume_decision(exp_dir, key, resume, log)
    if decision == "skip":
        log(f"[green]{exp_dir}: already trained for {cfg.max_steps} steps with this config and data; nothing to do[/]")
        return read_checkpoint(ckpts[-1]).get("dev_metrics", {})
    state = read_checkpoint(ckpts[-1]) if decision == "continue" else None
    run = _CodecRun(cfg, train_cuts, dev_cuts, exp_dir, state, ckpts, log)
    start_run(exp_dir, cfg, key)
    run.csv = CsvLog(exp_dir / LOG, log_fields(cfg.n_codebooks), fresh=state is None, keep_until=run.step)
    log(f"codec: {sum(p.numel() for p in run.model.parameters()) / 1e6:.2f}M params, {cfg.n_codebooks}x{cfg.codebook_size} codes, "
        f"downsample {cfg.downsample} ({run.meta['token_frame_shift'] * 1000:.0f} ms tokens); train {len(run.train.feats)} cuts "
        f"/ {run.train.num_frames} frames, dev {len(run.dev.feats)} cuts; device {run.device}{f' +{run.amp}' if run.amp is not None else ''}")
    loop = Loop("codec", cfg.max_steps, run.train_step, run.after_step, run.checkpoint, cfg.checkpoint_every,
                dev=[Dev(cfg.eval_every, run.evaluate, at_max=True)])
    run.model.train()
    end = run_loop(loop, run.step, min(cfg.max_steps, stop_at) if stop_at else cfg.max_steps, log, progress=False)
    metrics = finish_loop(loop, end)
    step = end.step
    recons, _ = codec_reconstruct(run.model, run.dev.feats[:1], None, str(run.device))
    plot_reconstruction(run.dev.feats[0], recons[0], f"{run.dev.ids[0]} (step {step}, all {cfg.n_codebooks} books)", exp_dir / PLOT)
    save_model(exp_dir / MODEL, run.model, cfg, run.meta, step)
    finish_run(exp_dir, key, step >= cfg.max_steps, exp_dir / MODEL, step=step)
    if step < cfg.max_steps:
        log(f"[yellow]stopped at step {step} of {cfg.max_steps} (--stop-at); continue with --resume[/]")
    log(f"[green]wrote {exp_dir / MODEL}, {exp_dir / LOG}, {exp_dir / PLOT}[/]")
    return metrics


class _CodecRun:
    """One codec training: data, model, optimiser and random source; the callbacks of its `Loop`."""

    def __init__(self, cfg: CodecConfig, train_cuts: Path, dev_cuts: Path, exp_dir: Path, state: dict | None,
                 ckpts: list[Path], log: Log) -> None:
        self.cfg, self.exp_dir = cfg, exp_dir
        self.train = stream_feature_set(train_cuts, cfg.normalize, cache_mb=cfg.cache_mb)  # loaded per batch, through a bounded cache
        dev_cutset = read_cuts(dev_cuts).subset(first=cfg.max_dev_cuts) if cfg.max_dev_cuts else read_cuts(dev_cuts)
        self.dev = load_feature_set(dev_cutset, cfg.normalize, f"{dev_cuts}: ", "loading dev features")
        train = self.train
        if self.dev.dim != train.dim:
            raise PolyspeechError(f"{dev_cuts}: feature dim {self.dev.dim} differs from the train set's {train.dim}")
        if state is not None and state["feat_dim"] != train.dim:
            raise PolyspeechError(f"{ckpts[-1]}: trained on {state['feat_dim']}-dim features, {train_cuts} has {train.dim}")
        if "fbank" in train.feature_type:
            log("[yellow]semantic stream: fbank features (the offline default; the paper's SSET uses HuBERT features)[/]")
        else:
            log(f"semantic stream: {train.feature_type} features ({train.dim}-dim)")
        self.device, _, self.amp = setup_device(cfg.device, cfg.precision, cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model = SSETCodec(train.dim, cfg).to(self.device)
        self.opt = adamw(self.model, cfg.lr, cfg.weight_decay, decay_vectors=True)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.gen.set_state(state["rng"])
            self.scaler.load_state_dict(state["scaler"])
            self.step = state["step"]
            log(f"resuming {exp_dir} at step {self.step}")
        self.meta = {"feat_dim": train.dim, "feature_type": train.feature_type, "frame_shift": train.frame_shift,
                     "normalization": cfg.normalize, "token_frame_shift": train.frame_shift * cfg.downsample}
        self.log, self.csv = log, None
        self.metrics: dict[str, Any] = {}
        self.t0, self.window, self.codes_seen = time.time(), [], []

    def checkpoint(self, step: int) -> None:
        full = {"model": self.model.state_dict(), "config": dataclasses.asdict(self.cfg), **self.meta, "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": self.gen.get_state(), "step": step}
        if step == self.cfg.max_steps:
            full["dev_metrics"] = dict(self.metrics)
        save_state(self.exp_dir, step, KIND, full, self.cfg.keep_last)

    def evaluate(self, step: int) -> dict[str, Any]:
        m = evaluate_codec(self.model, self.dev.feats, str(self.device))
        row = {"step": step, "split": "dev", "rel_mse": round(m["rel_mse"], 5), "recon_mse": round(m["rel_mse"], 5)}
        _book_stats(row, m["usage"], m["perplexity"])  # type: ignore[arg-type]
        self.csv.write(row)
        usage = " ".join(f"{u:.0%}" for u in m["usage"])  # type: ignore[union-attr]
        self.log(f"step {step:6d} [bold]dev[/] rel-MSE {m['rel_mse']:.4f} cos {m['cosine']:.3f} code usage {usage}")
        self.model.train()
        self.metrics = m
        return m

    def train_step(self, step: int) -> None:
        cfg, gen = self.cfg, self.gen
        x, mask = sample_batch(self.train, cfg, gen)
        x, mask = x.to(self.device), mask.to(self.device)
        n_q = cfg.n_codebooks
        if cfg.quantizer_dropout > 0 and float(torch.rand((), generator=gen)) < cfg.quantizer_dropout:
            n_q = int(torch.randint(1, cfg.n_codebooks + 1, (), generator=gen))
        for group in self.opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            y, codes, commit = self.model(x, mask, n_q=n_q, gen=gen)
        err = ((y.float() - x) ** 2).mean(-1)
        recon = (err * mask).sum() / mask.sum()
        loss = recon + cfg.commitment_weight * commit
        self.scaler.scale(loss).backward()
        optimizer_step(self.model, self.opt, self.scaler, cfg.grad_clip)
        self.window.append((recon.item(), commit.item()))
        if n_q == cfg.n_codebooks:
            zmask = mask[:, :: cfg.downsample][:, : codes.shape[1]]
            self.codes_seen.append(codes[zmask].cpu())

    def after_step(self, step: int, _: None) -> str:
        cfg = self.cfg
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            r, c = np.mean(self.window, axis=0)
            row = {"step": step, "split": "train", "recon_mse": round(float(r), 5), "commit": round(float(c), 5),
                   "lr": f"{lr_at(step - 1, cfg):.2e}", "seconds": round(time.time() - self.t0, 1)}
            if self.codes_seen:
                allc = torch.cat(self.codes_seen).numpy()
                from polyspeech_cli.codec.evaluate import usage_stats

                stats = [usage_stats(allc[:, i], cfg.codebook_size) for i in range(allc.shape[1])]
                _book_stats(row, [u for u, _ in stats], [p for _, p in stats])
            self.csv.write(row)
            self.log(f"step {step:6d} train recon {r:.4f} commit {c:.4f} lr {row['lr']} ({row['seconds']} s)")
            self.window, self.codes_seen = [], []
        return ""
