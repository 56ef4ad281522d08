"""Training of the speech decoder (+ speaker encoder), then optionally a HiFi-GAN vocoder.

Phase 1 (steps 1..max_steps): features of A + speaker embedding of a prompt B (another utterance
of A's speaker) → log-mel of A, loss L1 + MSE in per-band normalised mel space.
Phase 2 (only with `vocoder: hifigan`, hifigan.steps > 0): a HiFi-GAN on (ground-truth log-mel,
audio) segments. Batches come from an RNG seeded by (seed, step) and the LR schedule does not
depend on max_steps, so `--resume` (even with a larger --max-steps) continues exactly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from polyspeech_cli.config import save_config
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
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.vocoder.checkpoint import KIND, MODEL, read_checkpoint, save_model
from polyspeech_cli.vocoder.config import VocoderConfig, check_config, resolve_vocoder_mel
from polyspeech_cli.vocoder.data import decoder_batch, load_utterances, mel_stats, prompt_index, stream_utterances, vocoder_batch
from polyspeech_cli.vocoder.evaluate import evaluate_decoder, plot_mels, predict_mel
from polyspeech_cli.vocoder.hifigan import Discriminators, Generator, discriminator_loss, generator_losses
from polyspeech_cli.vocoder.mel import MelFrontend
from polyspeech_cli.vocoder.model import SpeechDecoder

def lr_factor(cfg: VocoderConfig, step: int) -> float:
    """Linear warm-up, then constant or halving every lr_half_life steps (independent of max_steps)."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    decay = 0.5 ** (max(0, step - cfg.warmup_steps) / cfg.lr_half_life) if cfg.lr_half_life > 0 else 1.0
    return warm * decay


LOG_FIELDS = ("step", "phase", "split", "loss", "l1", "mse", "spk", "metric", "value", "lr", "elapsed_s")


def speaker_contrastive(prompt_emb: torch.Tensor, target_emb: torch.Tensor, speakers: torch.Tensor, tau: float) -> torch.Tensor:
    """Supervised contrastive loss: each prompt embedding should be closest to the target-crop
    embeddings of its own speaker (several positives when a speaker occurs twice in the batch)."""
    logits = prompt_emb @ target_emb.t() / tau
    pos = (speakers[:, None] == speakers[None, :]).float()
    return -(pos * logits.log_softmax(dim=1)).sum(1).div(pos.sum(1)).mean()


def decoder_loss(model: SpeechDecoder, batch: dict[str, torch.Tensor], cfg: VocoderConfig) -> dict[str, torch.Tensor]:
    """L1 + MSE between predicted and target normalised log-mel over valid frames (+ speaker loss)."""
    spk = model.speaker(batch["prompt"], batch["prompt_mask"])
    pred = model(batch["feats"], spk, batch["mask"]).float()
    target = model.normalize_mel(batch["mel"])
    m = batch["mask"][..., None].float()
    denom = m.sum() * pred.shape[-1]
    l1 = ((pred - target).abs() * m).sum() / denom
    mse = (((pred - target) ** 2) * m).sum() / denom
    out = {"loss": l1 + mse, "l1": l1, "mse": mse}
    if cfg.speaker_loss_weight > 0:
        spk_loss = speaker_contrastive(spk, model.speaker(batch["mel"], batch["mask"]), batch["speaker"], cfg.speaker_temperature)
        out["loss"] = out["loss"] + cfg.speaker_loss_weight * spk_loss
        out["spk"] = spk_loss
    return out


def train(cfg: VocoderConfig, train_cuts: Path, dev_cuts: Path | None, exp_dir: Path, resume: bool = False,
          log: Callable[..., None] = print, progress: bool = True, stop_at: int | None = None) -> dict[str, float]:
    """Train into `exp_dir`; returns the final dev metrics ({} without dev cuts).

    `stop_at` ends the run early after that many steps (decoder steps, then decoder + HiFi-GAN
    steps; the checkpoints' N), leaving a checkpoint to `--resume` from. Runs holding
    `exp_dir_lock(exp_dir)`: a second training on the same exp dir is refused.
    """
    resolve_vocoder_mel(cfg, log)
    check_config(cfg)
    with exp_dir_lock(Path(exp_dir)):
        return _train(cfg, train_cuts, dev_cuts, exp_dir, resume, log, progress, stop_at)


def _train(cfg: VocoderConfig, train_cuts: Path, dev_cuts: Path | None, exp_dir: Path, resume: bool,
           log: Callable[..., None], progress: bool, stop_at: int | None) -> dict[str, float]:
    exp_dir = Path(exp_dir)
    ckpts = list_checkpoints(exp_dir)
    key = run_key(cfg, train_cuts)
    decision = check_resume(exp_dir, key, resume, ckpts[-1] if ckpts else None, budget_keys=("max_steps", "hifigan.steps"))
    if decision == "skip":
        log(f"{exp_dir}: already trained for {cfg.max_steps} steps with this config and data ({MODEL}); nothing to do")
        return {}
    if resume and decision == "fresh":
        log(f"--resume: no checkpoint in {exp_dir / 'ckpt'}, starting from scratch")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    amp = autocast_dtype(cfg.precision, device)
    use_gan = cfg.vocoder == "hifigan" and cfg.hifigan.steps > 0

    # streamed: each batch loads its cuts' features and audio from storage (memory does not grow with the set)
    data = stream_utterances(Path(train_cuts), cfg.mel, cfg.normalize, keep_audio=use_gan, cache_mb=cfg.cache_mb)
    groups = data.by_speaker()
    single = sum(1 for v in groups.values() if len(v) < 2)
    log(f"train: {len(data.utts)} utterances, {len(groups)} speakers, {data.feat_dim}-dim '{data.feature_type}' features "
        f"every {data.frame_shift * 1000:.0f} ms" + (f"; {single} speakers have 1 utterance (prompt = itself)" if single else ""))
    dev = None
    if dev_cuts:
        dev = load_utterances(Path(dev_cuts), cfg.mel, cfg.normalize, max_cuts=cfg.max_dev_cuts, progress=None if progress else False)
        if dev.feat_dim != data.feat_dim:
            raise PolyspeechError(f"{dev_cuts}: {dev.feat_dim}-dim features but the train cuts have {data.feat_dim} (extract the same type)")

    torch.manual_seed(cfg.seed)
    model = SpeechDecoder(data.feat_dim, cfg.mel.n_mels, cfg.decoder)
    model.set_mel_stats(*mel_stats(data))
    model.to(device)
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    gen = disc = opt_g = opt_d = None
    if use_gan:
        gen, disc = Generator(cfg.mel.n_mels, cfg.hifigan).to(device), Discriminators(cfg.hifigan).to(device)
        # torch's AdamW default weight decay (0.01) on every parameter, as HiFi-GAN trains
        opt_g = adamw(gen, cfg.hifigan.lr, 0.01, tuple(cfg.hifigan.betas), decay_vectors=True)
        opt_d = adamw(disc, cfg.hifigan.lr, 0.01, tuple(cfg.hifigan.betas), decay_vectors=True)
    step = gan_step = 0
    if decision == "continue":
        state = read_checkpoint(ckpts[-1])
        if state.get("feat_dim") != data.feat_dim:
            raise PolyspeechError(f"{ckpts[-1]} was trained on {state.get('feat_dim')}-dim features but {train_cuts} has "
                                  f"{data.feat_dim}-dim ones: resume with the same features, or use a new --exp-dir")
        try:
            model.load_state_dict(state["decoder"])
        except RuntimeError as e:
            raise PolyspeechError(f"{ckpts[-1]} holds a decoder of another shape than this config builds "
                                  f"({' '.join(str(e).split())[:150]}...): "
                                  "resume with the config in the exp dir's config.yaml, or use a new --exp-dir") from e
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, gan_step = state["step"], state["gan_step"]
        if use_gan and state.get("generator") is not None:
            gen.load_state_dict(state["generator"])
            disc.load_state_dict(state["discriminators"])
            opt_g.load_state_dict(state["opt_g"])
            opt_d.load_state_dict(state["opt_d"])
        log(f"resumed from {ckpts[-1]} at step {step}" + (f" (+{gan_step} HiFi-GAN steps)" if gan_step else ""))
    exp_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, exp_dir / "config.yaml")
    mark_run(exp_dir, key, finished=False)
    csv_log = CsvLog(exp_dir / "train_log.csv", LOG_FIELDS, fresh=step == 0 and gan_step == 0, keep_until=step if gan_step == 0 else None)
    meta = {"feat_dim": data.feat_dim, "frame_shift": data.frame_shift, "feature_type": data.feature_type}
    log(f"model: {model.num_params() / 1e6:.2f} M parameters (decoder + speaker encoder), device {device}"
        + (f", HiFi-GAN generator {sum(p.numel() for p in gen.parameters()) / 1e6:.2f} M" if gen is not None else ""))

    def checkpoint(new_gan_step: int | None = None) -> None:
        nonlocal gan_step
        gan_step = gan_step if new_gan_step is None else new_gan_step
        save_checkpoint(exp_dir, step + gan_step, {
            "kind": KIND, "decoder": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(), "step": step, "gan_step": gan_step, **meta,
            "generator": gen.state_dict() if gen is not None else None,
            "discriminators": disc.state_dict() if disc is not None else None,
            "opt_g": opt_g.state_dict() if opt_g is not None else None, "opt_d": opt_d.state_dict() if opt_d is not None else None,
        }, cfg.keep_last)

    def validate() -> dict[str, float]:
        if dev is None:
            return {}
        m = evaluate_decoder(model, dev, device)
        for k, v in m.items():
            csv_log.write(step=step, phase="decoder", split="dev", metric=k, value=v, elapsed_s=time.time() - t0)
        u = dev.utts[0]
        p = dev.utts[prompt_index(dev.by_speaker(), 0, u.speaker, None)]
        plot_mels(u.mel, predict_mel(model, u.feats, p.mel, device), f"{u.cut_id} (step {step})", exp_dir / "dev_mel.png")
        log(f"step {step} dev: " + " ".join(f"{k}={v:.4f}" for k, v in m.items()))
        return m

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    t0 = time.time()
    ema: float | None = None
    bar = Progress(TextColumn("[bold]vocoder"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.description}"),
                   disable=not progress)
    model.train()
    metrics: dict[str, float] = {}
    start_step = step
    with bar:
        job = bar.add_task("", total=cfg.max_steps, completed=step)
        while step < min(cfg.max_steps, stop_at or cfg.max_steps):
            batch = {k: v.to(device) for k, v in decoder_batch(data, groups, cfg.seed, step, cfg.batch_size,
                                                                 cfg.segment_frames, cfg.prompt_frames, cfg.feature_warp).items()}
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                out = decoder_loss(model, batch, cfg)
            scaler.scale(out["loss"]).backward()
            optimizer_step(model, opt, scaler, cfg.grad_clip)
            sched.step()
            step += 1
            loss = float(out["loss"].detach())
            ema = loss if ema is None else 0.9 * ema + 0.1 * loss
            bar.update(job, completed=step, description=f"loss {ema:.4f}")
            if step == 1 or step % cfg.log_every == 0 or step == cfg.max_steps:
                csv_log.write(step=step, phase="decoder", split="train", loss=loss, l1=float(out["l1"].detach()), mse=float(out["mse"].detach()),
                              spk=float(out["spk"].detach()) if "spk" in out else "",
                              lr=sched.get_last_lr()[0], elapsed_s=time.time() - t0)
            if cfg.valid_every and step % cfg.valid_every == 0 and step < cfg.max_steps:
                validate()
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.max_steps:
                checkpoint()
    if step > start_step or not ckpts:  # nothing new to save when resuming a finished decoder
        metrics = validate()
        checkpoint()
    if use_gan and step >= cfg.max_steps:
        # fp16 would need a second grad scaler for the GAN; it runs in bf16 or fp32 instead
        gan_amp = amp if amp == torch.bfloat16 else None
        gan_end = min(cfg.hifigan.steps, stop_at - step) if stop_at else cfg.hifigan.steps
        new_gan_step = train_hifigan(cfg, data, gen, disc, opt_g, opt_d, device, gan_amp, gan_step, csv_log, checkpoint, progress, t0, gan_end)
        if new_gan_step > gan_step:
            checkpoint(new_gan_step)
    save_model(exp_dir / MODEL, cfg, model, gen if gan_step > 0 else None, meta)
    finished = step >= cfg.max_steps and (not use_gan or gan_step >= cfg.hifigan.steps)
    mark_run(exp_dir, key, finished=finished, outputs=[exp_dir / MODEL], step=step, gan_step=gan_step)
    log(f"done: {step} decoder steps" + (f" + {gan_step} HiFi-GAN steps" if use_gan else "") + f" in {time.time() - t0:.0f} s; "
        f"model {exp_dir / MODEL}, log {exp_dir / 'train_log.csv'}, mel plot {exp_dir / 'dev_mel.png'}"
        + ("" if finished else "; stopped early (--stop-at): continue with --resume"))
    return metrics


def train_hifigan(cfg: VocoderConfig, data, gen: Generator, disc: Discriminators, opt_g, opt_d, device: torch.device,
                  amp: torch.dtype | None, gan_step: int, csv_log: CsvLog, checkpoint: Callable[[int], None], progress: bool,
                  t0: float, gan_end: int | None = None) -> int:
    """Phase 2: HiFi-GAN on ground-truth (log-mel, audio) segments; returns the final GAN step.
    `checkpoint(gan_step)` writes the full training state (decoder included)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    h = cfg.hifigan
    frontend = MelFrontend(cfg.mel).to(device)
    bar = Progress(TextColumn("[bold]hifigan"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.description}"),
                   disable=not progress)
    gen.train()
    disc.train()
    gan_end = h.steps if gan_end is None else gan_end
    with bar:
        job = bar.add_task("", total=h.steps, completed=gan_step)
        while gan_step < gan_end:
            mel, wave = (t.to(device) for t in vocoder_batch(data, cfg.seed, gan_step, h.batch_size, h.segment_frames, cfg.mel.hop_length))
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                fake = gen(mel)
                d_loss = discriminator_loss(disc(wave), disc(fake.detach()))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                adv, fm = generator_losses(disc(wave), disc(fake))
                mel_l1 = F.l1_loss(frontend(fake.float()), frontend(wave))
                g_loss = adv + h.fm_loss_weight * fm + h.mel_loss_weight * mel_l1
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            gan_step += 1
            bar.update(job, completed=gan_step, description=f"mel L1 {float(mel_l1.detach()):.3f}")
            if gan_step % cfg.log_every == 0 or gan_step == h.steps:
                csv_log.write(step=gan_step, phase="hifigan", split="train", loss=float(g_loss.detach()), l1=float(mel_l1.detach()),
                              metric="d_loss", value=float(d_loss.detach()), elapsed_s=time.time() - t0)
            if cfg.checkpoint_every and gan_step % cfg.checkpoint_every == 0 and gan_step < h.steps:
                checkpoint(gan_step)
    return gan_step
