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

from polyspeech_cli.training import CsvLog, adamw, exp_dir_lock, optimizer_step, run_key
from polyspeech_cli.training_loop import Dev, Loop, finish_loop, finish_run, resume_decision, run_loop, save_state, setup_device, start_run
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
    key = run_key(cfg, train_cuts)
    decision, ckpts = resume_decision(exp_dir, key, resume, log, budget_keys=("max_steps", "hifigan.steps"))
    if decision == "skip":
        log(f"{exp_dir}: already trained for {cfg.max_steps} steps with this config and data ({MODEL}); nothing to do")
        return {}
    run = _DecoderRun(cfg, train_cuts, dev_cuts, exp_dir, log, progress)
    if decision == "continue":
        run.resume(ckpts[-1], train_cuts)
    step = run.step
    start_run(exp_dir, cfg, key)
    run.csv = CsvLog(exp_dir / "train_log.csv", LOG_FIELDS, fresh=step == 0 and run.gan_step == 0, keep_until=step if run.gan_step == 0 else None)
    log(f"model: {run.model.num_params() / 1e6:.2f} M parameters (decoder + speaker encoder), device {run.device}"
        + (f", HiFi-GAN generator {sum(p.numel() for p in run.gen.parameters()) / 1e6:.2f} M" if run.gen is not None else ""))
    run.t0 = time.time()
    loop = Loop("vocoder", cfg.max_steps, run.train_step, run.after_step, lambda s: run.checkpoint(), cfg.checkpoint_every,
                dev=[Dev(cfg.valid_every, run.validate)])
    run.model.train()
    end = run_loop(loop, step, min(cfg.max_steps, stop_at or cfg.max_steps), log, progress)
    metrics = finish_loop(loop, end, always=not ckpts)  # nothing new to save when resuming a finished decoder
    step = end.step
    if run.use_gan and step >= cfg.max_steps:
        run.train_hifigan(min(cfg.hifigan.steps, stop_at - step) if stop_at else cfg.hifigan.steps)
    gan_step = run.gan_step
    save_model(exp_dir / MODEL, cfg, run.model, run.gen if gan_step > 0 else None, run.meta)
    finished = step >= cfg.max_steps and (not run.use_gan or gan_step >= cfg.hifigan.steps)
    finish_run(exp_dir, key, finished, exp_dir / MODEL, step=step, gan_step=gan_step)
    log(f"done: {step} decoder steps" + (f" + {gan_step} HiFi-GAN steps" if run.use_gan else "") + f" in {time.time() - run.t0:.0f} s; "
        f"model {exp_dir / MODEL}, log {exp_dir / 'train_log.csv'}, mel plot {exp_dir / 'dev_mel.png'}"
        + ("" if finished else "; stopped early (--stop-at): continue with --resume"))
    return metrics


class _DecoderRun:
    """One speech-decoder training (+ its HiFi-GAN): data, models, optimisers; the callbacks of its `Loop`s."""

    def __init__(self, cfg: VocoderConfig, train_cuts: Path, dev_cuts: Path | None, exp_dir: Path, log: Callable[..., None],
                 progress: bool) -> None:
        self.cfg, self.exp_dir, self.log, self.progress = cfg, exp_dir, log, progress
        self.device, _, self.amp = setup_device(cfg.device, cfg.precision, cfg.threads)
        self.use_gan = cfg.vocoder == "hifigan" and cfg.hifigan.steps > 0
        # streamed: each batch loads its cuts' features and audio from storage (memory does not grow with the set)
        self.data = data = stream_utterances(Path(train_cuts), cfg.mel, cfg.normalize, keep_audio=self.use_gan, cache_mb=cfg.cache_mb)
        self.groups = data.by_speaker()
        single = sum(1 for v in self.groups.values() if len(v) < 2)
        log(f"train: {len(data.utts)} utterances, {len(self.groups)} speakers, {data.feat_dim}-dim '{data.feature_type}' features "
            f"every {data.frame_shift * 1000:.0f} ms" + (f"; {single} speakers have 1 utterance (prompt = itself)" if single else ""))
        self.dev = None
        if dev_cuts:
            self.dev = load_utterances(Path(dev_cuts), cfg.mel, cfg.normalize, max_cuts=cfg.max_dev_cuts, progress=None if progress else False)
            if self.dev.feat_dim != data.feat_dim:
                raise PolyspeechError(f"{dev_cuts}: {self.dev.feat_dim}-dim features but the train cuts have {data.feat_dim} (extract the same type)")
        torch.manual_seed(cfg.seed)
        self.model = SpeechDecoder(data.feat_dim, cfg.mel.n_mels, cfg.decoder)
        self.model.set_mel_stats(*mel_stats(data))
        self.model.to(self.device)
        self.opt = adamw(self.model, cfg.lr, cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(cfg, s))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.gen = self.disc = self.opt_g = self.opt_d = None
        if self.use_gan:
            self.gen, self.disc = Generator(cfg.mel.n_mels, cfg.hifigan).to(self.device), Discriminators(cfg.hifigan).to(self.device)
            # torch's AdamW default weight decay (0.01) on every parameter, as HiFi-GAN trains
            self.opt_g = adamw(self.gen, cfg.hifigan.lr, 0.01, tuple(cfg.hifigan.betas), decay_vectors=True)
            self.opt_d = adamw(self.disc, cfg.hifigan.lr, 0.01, tuple(cfg.hifigan.betas), decay_vectors=True)
        self.step = self.gan_step = 0
        self.meta = {"feat_dim": data.feat_dim, "frame_shift": data.frame_shift, "feature_type": data.feature_type}
        self.csv: CsvLog | None = None
        self.t0, self.ema = time.time(), None

    def resume(self, ckpt: Path, train_cuts: Path) -> None:
        state = read_checkpoint(ckpt)
        if state.get("feat_dim") != self.data.feat_dim:
            raise PolyspeechError(f"{ckpt} was trained on {state.get('feat_dim')}-dim features but {train_cuts} has "
                                  f"{self.data.feat_dim}-dim ones: resume with the same features, or use a new --exp-dir")
        try:
            self.model.load_state_dict(state["decoder"])
        except RuntimeError as e:
            raise PolyspeechError(f"{ckpt} holds a decoder of another shape than this config builds "
                                  f"({' '.join(str(e).split())[:150]}...): "
                                  "resume with the config in the exp dir's config.yaml, or use a new --exp-dir") from e
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.gan_step = state["step"], state["gan_step"]
        if self.use_gan and state.get("generator") is not None:
            self.gen.load_state_dict(state["generator"])
            self.disc.load_state_dict(state["discriminators"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        self.log(f"resumed from {ckpt} at step {self.step}" + (f" (+{self.gan_step} HiFi-GAN steps)" if self.gan_step else ""))

    def checkpoint(self, gan_step: int | None = None) -> None:
        """The full training state (decoder, and HiFi-GAN at `gan_step`) at step `step + gan_step`."""
        self.gan_step = self.gan_step if gan_step is None else gan_step
        save_state(self.exp_dir, self.step + self.gan_step, KIND, {
            "decoder": self.model.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(), "step": self.step, "gan_step": self.gan_step, **self.meta,
            "generator": self.gen.state_dict() if self.gen is not None else None,
            "discriminators": self.disc.state_dict() if self.disc is not None else None,
            "opt_g": self.opt_g.state_dict() if self.opt_g is not None else None,
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
        }, self.cfg.keep_last)

    def validate(self, step: int) -> dict[str, float]:
        dev, model = self.dev, self.model
        if dev is None:
            return {}
        m = evaluate_decoder(model, dev, self.device)
        for k, v in m.items():
            self.csv.write(step=step, phase="decoder", split="dev", metric=k, value=v, elapsed_s=time.time() - self.t0)
        u = dev.utts[0]
        p = dev.utts[prompt_index(dev.by_speaker(), 0, u.speaker, None)]
        plot_mels(u.mel, predict_mel(model, u.feats, p.mel, self.device), f"{u.cut_id} (step {step})", self.exp_dir / "dev_mel.png")
        self.log(f"step {step} dev: " + " ".join(f"{k}={v:.4f}" for k, v in m.items()))
        return m

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg, device = self.cfg, self.device
        batch = {k: v.to(device) for k, v in decoder_batch(self.data, self.groups, cfg.seed, step, cfg.batch_size,
                                                             cfg.segment_frames, cfg.prompt_frames, cfg.feature_warp).items()}
        with torch.autocast(device.type, dtype=self.amp, enabled=self.amp is not None):
            out = decoder_loss(self.model, batch, cfg)
        self.scaler.scale(out["loss"]).backward()
        optimizer_step(self.model, self.opt, self.scaler, cfg.grad_clip)
        self.sched.step()
        self.step = step + 1
        return out

    def after_step(self, step: int, out: dict[str, torch.Tensor]) -> str:
        cfg = self.cfg
        loss = float(out["loss"].detach())
        self.ema = loss if self.ema is None else 0.9 * self.ema + 0.1 * loss
        if step == 1 or step % cfg.log_every == 0 or step == cfg.max_steps:
            self.csv.write(step=step, phase="decoder", split="train", loss=loss, l1=float(out["l1"].detach()), mse=float(out["mse"].detach()),
                           spk=float(out["spk"].detach()) if "spk" in out else "",
                           lr=self.sched.get_last_lr()[0], elapsed_s=time.time() - self.t0)
        return f"loss {self.ema:.4f}"

    def train_hifigan(self, gan_end: int) -> None:
        """Phase 2: HiFi-GAN on ground-truth (log-mel, audio) segments up to GAN step `gan_end`; every
        checkpoint holds the full training state (decoder included)."""
        # fp16 would need a second grad scaler for the GAN; it runs in bf16 or fp32 instead
        amp = self.amp if self.amp == torch.bfloat16 else None
        phase = HifiganPhase(self.cfg, self.data, self.gen, self.disc, self.opt_g, self.opt_d, self.device, amp, self.csv, self.t0)
        loop = Loop("hifigan", self.cfg.hifigan.steps, phase.train_step, phase.after_step, self.checkpoint, self.cfg.checkpoint_every)
        self.gen.train()
        self.disc.train()
        end = run_loop(loop, self.gan_step, gan_end, self.log, self.progress)
        finish_loop(loop, end)


class HifiganPhase:
    """The step of phase 2: HiFi-GAN on ground-truth (log-mel, audio) segments."""

    def __init__(self, cfg: VocoderConfig, data, gen: Generator, disc: Discriminators, opt_g, opt_d, device: torch.device,
                 amp: torch.dtype | None, csv_log: CsvLog, t0: float) -> None:
        self.cfg, self.data, self.gen, self.disc, self.opt_g, self.opt_d = cfg, data, gen, disc, opt_g, opt_d
        self.device, self.amp, self.csv, self.t0 = device, amp, csv_log, t0
        self.frontend = MelFrontend(cfg.mel).to(device)

    def train_step(self, gan_step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, device, amp = self.cfg.hifigan, self.device, self.amp
        gen, disc = self.gen, self.disc
        mel, wave = (t.to(device) for t in vocoder_batch(self.data, self.cfg.seed, gan_step, h.batch_size, h.segment_frames, self.cfg.mel.hop_length))
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            fake = gen(mel)
            d_loss = discriminator_loss(disc(wave), disc(fake.detach()))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            adv, fm = generator_losses(disc(wave), disc(fake))
            mel_l1 = F.l1_loss(self.frontend(fake.float()), self.frontend(wave))
            g_loss = adv + h.fm_loss_weight * fm + h.mel_loss_weight * mel_l1
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return g_loss, d_loss, mel_l1

    def after_step(self, gan_step: int, out: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> str:
        g_loss, d_loss, mel_l1 = out
        if gan_step % self.cfg.log_every == 0 or gan_step == self.cfg.hifigan.steps:
            self.csv.write(step=gan_step, phase="hifigan", split="train", loss=float(g_loss.detach()), l1=float(mel_l1.detach()),
                           metric="d_loss", value=float(d_loss.detach()), elapsed_s=time.time() - self.t0)
        return f"mel L1 {float(mel_l1.detach()):.3f}"
