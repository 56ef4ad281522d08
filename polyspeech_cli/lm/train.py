"""Multitask training of the PolySpeech LM (single-task = one entry in `tasks`).

Each optimiser step picks ONE task at random, with probability proportional to that task's
data volume in hours (or to `task_weights`), sharpened/flattened by `task_temperature`:
p_t ∝ v_t^(1/T). It then accumulates `grad_accum` batches of that task. Runs under
`torchrun --nproc_per_node N` as DDP: every rank draws the same task (same seed), and each
task's sampler is sharded by rank.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from lhotse import CutSet
from lhotse.dataset import SimpleCutSampler

from polyspeech_cli.config import save_config, to_dict
from polyspeech_cli.fileio import list_checkpoints
from polyspeech_cli.training import CsvLog, adamw, exp_dir_lock, optimizer_step, run_key
from polyspeech_cli.training_loop import (
    Dev,
    EarlyStopping,
    Loop,
    LoopEnd,
    average_last,
    finish_run,
    quiet,
    resume_decision,
    run_loop,
    save_state,
    setup_device,
    start_run,
)
from polyspeech_cli.data.manifest import read_cuts
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_write_text
from polyspeech_cli.lm.checkpoint import (
    KIND,
    MODEL,
    build_model,
    load_checkpoint,
    read_checkpoint,
    rng_state,
    save_model,
    set_rng_state,
)
from polyspeech_cli.lm.config import TrainConfig
from polyspeech_cli.lm.data import (
    CMVN_SCOPES,
    DataConfig,
    SpecAugmentConfig,
    VoicePerturbConfig,
    augment_batch,
    check_augment,
    TaskDataset,
    TaskStream,
    codebook_size,
    feature_stats,
    has_labels,
    select_task_cuts,
    to_device,
)
from polyspeech_cli.lm.evaluate import evaluate
from polyspeech_cli.lm.summary import dev_error
from polyspeech_cli.lm.model import PolySpeechLM
from polyspeech_cli.lm.plot import plot_losses
from polyspeech_cli.lm.tasks import CLASS_TASKS, TASKS, check_task
from polyspeech_cli.lm.vocab import Vocab, build_vocab


# ---- helpers ------------------------------------------------------------------------------------
def task_probabilities(hours: dict[str, float], weights: dict[str, float], temperature: float) -> dict[str, float]:
    """p_t ∝ (hours_t * weight_t)^(1/temperature); a task missing from `weights` has weight 1
    (weights of known tasks that are not being trained are ignored)."""
    unknown = set(weights) - set(TASKS)
    if unknown:
        raise PolyspeechError(f"task_weights names unknown tasks: {', '.join(sorted(unknown))} (tasks are {', '.join(TASKS)})")
    raw = {t: (h * weights.get(t, 1.0)) ** (1.0 / temperature) for t, h in hours.items()}
    total = sum(raw.values())
    if total <= 0:
        raise PolyspeechError("task weights are all zero (give at least one task a positive weight)")
    return {t: v / total for t, v in raw.items()}


def draw_task(rng: random.Random, probs: dict[str, float]) -> str:
    """One step's task. The draw goes over the task *names* in sorted order, so `--tasks asr,lid`
    and `--tasks lid,asr` draw the same sequence (and train the same model)."""
    names = sorted(probs)
    return rng.choices(names, weights=[probs[t] for t in names])[0]


def task_draws(probs: dict[str, float], seed: int, steps: int) -> dict[str, int]:
    """How many of `steps` steps a run seeded `seed` gives each task: the trainer's own draws."""
    rng, counts = random.Random(seed), dict.fromkeys(probs, 0)
    for _ in range(steps):
        counts[draw_task(rng, probs)] += 1
    return counts


def batch_seconds(cfg: TrainConfig, task: str) -> float:
    """Seconds of speech per training batch of `task` (class_max_duration for LID/GID when set)."""
    return cfg.class_max_duration if task in CLASS_TASKS and cfg.class_max_duration > 0 else cfg.max_duration


def lr_lambda(cfg: TrainConfig):
    """Linear warm-up to `lr`, then linear decay to 0 at `max_steps`."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return max(0.0, (cfg.max_steps - step) / max(1, cfg.max_steps - cfg.warmup_steps))

    return f


# One row per (step, split, task) of the training log.
LOG_FIELDS = ("step", "split", "task", "task_steps", "loss", "ce", "ctc", "metric", "value", "lr", "hours_seen", "elapsed_s")


def _n_speech_tokens(cut, data_cfg: DataConfig) -> int:
    shape = cut.custom[data_cfg.speech_tokens].shape
    return shape[0] * (min(data_cfg.speech_codebooks, shape[1]) if len(shape) > 1 else 1)


def alignment_rates(model: PolySpeechLM, vocab: Vocab, task_cuts: dict[str, CutSet], data_cfg: DataConfig) -> dict[str, float]:
    """Output tokens per input item on the training data (ASR: text units per speech position;
    TTS: speech tokens per text unit); used by `model.aligned_positions`."""
    rates = {}
    for task in ("asr", "tts"):
        if task not in task_cuts:
            continue
        n_in = n_out = 0  # one pass over the (possibly lazy) cut set
        for c in task_cuts[task]:
            n_text = len(vocab.encode_text(c.supervisions[0].text))
            if task == "asr":
                n_in += model.adapter.out_len(c.num_frames) if data_cfg.speech_input == "features" else _n_speech_tokens(c, data_cfg)
                n_out += n_text
            else:
                n_in, n_out = n_in + n_text, n_out + _n_speech_tokens(c, data_cfg)
        rates[task] = n_out / max(n_in, 1)
    return rates


def speech_task(task_cuts: dict[str, CutSet]) -> str | None:
    """The task whose cuts give the feature dimension, frame shift and CMVN statistics: the first
    speech-input task in `TASKS` order (not `--tasks` order, which must not change the model)."""
    return next((t for t in TASKS if t in task_cuts and t != "tts"), None)


def _feat_dim(task_cuts: dict[str, CutSet], data_cfg: DataConfig) -> int:
    task = speech_task(task_cuts)
    if data_cfg.speech_input != "features" or task is None:
        return 0
    return next(iter(task_cuts[task])).num_features


def matched_budget(cfg: TrainConfig, cuts: CutSet, manifest: Path, log=print) -> TrainConfig:
    """`cfg` with max_steps set to the number of steps that a multitask run of this config over
    `cfg.steps_share_of` gives the task (its own seeded draws, replayed: as many batches of the task
    as the multitask model sees) and warmup_steps scaled by the task's share; unchanged when that
    list is empty (see TrainConfig.steps_share_of)."""
    if not cfg.steps_share_of:
        return cfg
    if len(cfg.tasks) != 1 or cfg.tasks[0] not in cfg.steps_share_of:
        raise PolyspeechError(f"--steps-share-of is for single-task baselines: --tasks must be one of {','.join(cfg.steps_share_of)} "
                              f"(got {','.join(cfg.tasks)})")
    sel = select_task_cuts(cuts, cfg.steps_share_of, cfg.data, manifest, log=lambda *a: None)
    hours = {t: sum(c.duration for c in tc) / 3600 for t, tc in sel.items()}
    probs = task_probabilities(hours, cfg.task_weights, cfg.task_temperature)
    share = probs[cfg.tasks[0]]
    out = copy.deepcopy(cfg)
    out.max_steps = max(1, task_draws(probs, cfg.seed, cfg.max_steps)[cfg.tasks[0]])
    out.warmup_steps = max(1, round(cfg.warmup_steps * share))
    out.steps_share_of = []  # the saved config.yaml holds the effective budget
    log(f"budget: {out.max_steps} steps, the '{cfg.tasks[0]}' steps of a {cfg.max_steps}-step multitask run over "
        f"{','.join(cfg.steps_share_of)} (p = {share:.3f})")
    return out


# Keys added after runs were recorded: at their default (off) they are left out of the run key, so
# an exp dir trained before they existed still resumes or skips (training.check_resume).
# Dotted keys name nested options.
_NEW_KEY_DEFAULTS = {"spec_augment": to_dict(SpecAugmentConfig()), "label_smoothing": 0.0, "class_crop_seconds": 0.0,
                     "perturb": to_dict(VoicePerturbConfig()), "class_max_duration": 0.0, "model.class_pooling": False,
                     "model.class_frame_weight": 0.0}


def lm_run_key(cfg: TrainConfig, train_cuts: Path) -> dict:
    key = run_key(cfg, train_cuts)
    for dotted, default in _NEW_KEY_DEFAULTS.items():
        *parents, leaf = dotted.split(".")
        node = key["options"]
        for part in parents:
            node = node.get(part, {})
        if node.get(leaf) == default:
            del node[leaf]
    return key


def batch_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """The random source of one training batch's augmentation: a function of (seed, step, micro
    batch) only, so a resumed run draws exactly the masks and crops of the uninterrupted one."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 64 + micro)


# ---- the loop -----------------------------------------------------------------------------------
def train(cfg: TrainConfig, train_cuts: Path, dev_cuts: Path | None, exp_dir: Path, resume: bool = False,
          log=print, progress: bool = True, stop_at: int | None = None, vocab_only: bool = False) -> dict:
    """Train; returns {"step", "metrics" (final dev metrics, rank 0), "param_checksum"}.

    `vocab_only`: build and write `vocab.json` (+ `text.model`) and stop (a recipe stage).
    `stop_at` ends the run early after that step (as an interruption would; the learning-rate
    schedule still spans `max_steps`), leaving a checkpoint to `--resume` from.
    One training per exp dir: rank 0 holds its lock (`training.exp_dir_lock`) for the whole run.
    """
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with exp_dir_lock(Path(exp_dir)) if rank0 else nullcontext():
        return _train(cfg, train_cuts, dev_cuts, exp_dir, resume, log, progress, stop_at, vocab_only)


@dataclass
class LMData:
    """What `train lm` (and `bench train`) derive from the train cuts: the cuts of each task, the
    vocabulary (+ the bytes of its sentencepiece model, if any), the feature dim, each task's hours
    and step probability."""

    cuts: CutSet
    task_cuts: dict[str, CutSet]
    vocab: Vocab
    spm_bytes: bytes | None
    feat_dim: int
    hours: dict[str, float]
    probs: dict[str, float]


def lm_data(cfg: TrainConfig, cuts: CutSet, train_cuts: Path, log=print) -> LMData:
    """The setup of the data every LM training shares (`LMData`). The vocabulary is rebuilt from the
    train cuts every time (a resumed run compares it with its checkpoint's)."""
    task_cuts = select_task_cuts(cuts, cfg.tasks, cfg.data, Path(train_cuts), log=log)
    texts = [c.supervisions[0].text for c in cuts if c.supervisions and c.supervisions[0].text]
    langs = {c.supervisions[0].language for c in cuts if c.supervisions and c.supervisions[0].language}
    need_tokens = "tts" in cfg.tasks or cfg.data.speech_input == "tokens"
    cb_size = codebook_size(cuts, cfg.data) if need_tokens else 0
    with tempfile.TemporaryDirectory() as tmp:
        vocab = build_vocab(texts, langs, cfg.vocab, Path(tmp), cfg.data.speech_tokens if need_tokens else None,
                            cb_size, cfg.data.speech_codebooks if need_tokens else 0)
        spm_bytes = (Path(tmp) / "text.model").read_bytes() if vocab.spm_model else None
    hours = {t: sum(c.duration for c in tc) / 3600 for t, tc in task_cuts.items()}
    probs = task_probabilities(hours, cfg.task_weights, cfg.task_temperature)
    return LMData(cuts, task_cuts, vocab, spm_bytes, _feat_dim(task_cuts, cfg.data), hours, probs)


def _train(cfg: TrainConfig, train_cuts: Path, dev_cuts: Path | None, exp_dir: Path, resume: bool,
           log, progress: bool, stop_at: int | None, vocab_only: bool) -> dict:
    run = _LMTraining(cfg, exp_dir, log)
    done = run.setup(train_cuts, dev_cuts, resume, vocab_only)
    if done is not None:  # skipped, or the vocabulary stage
        return done
    run.build(dev_cuts)
    run.resume()
    return run.finish(run.loop(progress, stop_at))


class _LMTraining:
    """One `train lm` run: setup (checks, processes, device, data and vocabulary, the resume
    decision, the exp dir's files), the model and its optimiser, resume, the callbacks of the
    skeleton's loop (`training_loop.run_loop`) and the end of the run."""

    def __init__(self, cfg: TrainConfig, exp_dir: Path, log) -> None:
        for t in cfg.tasks:
            check_task(t, "--tasks")
        if cfg.data.cmvn_scope not in CMVN_SCOPES:
            raise PolyspeechError(f"data.cmvn_scope must be one of {', '.join(CMVN_SCOPES)}, got {cfg.data.cmvn_scope!r} (fix the config)")
        check_augment(cfg.spec_augment, cfg.label_smoothing, cfg.class_crop_seconds, cfg.perturb)
        self.distributed = distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        self.is_main = self.rank == 0
        self.say = log if self.is_main else quiet
        # config.yaml and the resume key hold the resolved precision
        self.device, cfg.precision, self.amp = setup_device(cfg.device, cfg.precision, cfg.threads)
        self.cfg, self.exp_dir = cfg, Path(exp_dir)

    def setup(self, train_cuts: Path, dev_cuts: Path | None, resume: bool, vocab_only: bool) -> dict | None:
        """Data, vocabulary, the resume decision (the vocabulary is checked first) and the exp dir's
        files, written only then; a result when there is nothing to train (skip, `vocab_only`)."""
        say, exp_dir = self.say, self.exp_dir
        cuts = read_cuts(Path(train_cuts), "train cuts")
        self.cfg = cfg = matched_budget(self.cfg, cuts, Path(train_cuts), log=say)
        if cfg.patience and (len(cfg.tasks) != 1 or not dev_cuts):
            raise PolyspeechError(f"patience (early stopping) is for single-task runs with --dev-cuts; got tasks {','.join(cfg.tasks)}"
                                  f"{'' if dev_cuts else ' and no --dev-cuts'} (set patience: 0 or train one task)")
        if cfg.patience and self.distributed:  # only rank 0 evaluates: the other ranks would not know when to stop
            raise PolyspeechError("patience (early stopping) does not run under torchrun yet: set patience: 0 for multi-process training")
        self.data = data = lm_data(cfg, cuts, Path(train_cuts), log=say)
        vocab = data.vocab
        ckpts = list_checkpoints(exp_dir)
        self.key = lm_run_key(cfg, train_cuts)
        self.state = load_checkpoint(ckpts[-1], vocab.fingerprint) if resume and ckpts else None
        decision, _ = resume_decision(exp_dir, self.key, resume, quiet if vocab_only else say, checkpoints=ckpts)
        if decision == "skip" and not vocab_only:
            say(f"{exp_dir}: already trained for {self.state['step']} steps with this config and data; nothing to do")
            return {"step": self.state["step"], "metrics": {}, "param_checksum": 0.0}
        if self.is_main:
            self._write_exp_files(vocab_only)
        if vocab_only:
            say(f"vocabulary: {vocab.size} tokens ({len(vocab.text_units)} {cfg.vocab.text_unit} text units) -> {exp_dir / 'vocab.json'}")
            return {"step": 0, "metrics": {}, "param_checksum": 0.0}
        say("tasks: " + ", ".join(f"{t} {data.hours[t]:.2f} h p={data.probs[t]:.2f}" for t in cfg.tasks))
        return None

    def _write_exp_files(self, vocab_only: bool) -> None:
        exp_dir, cfg, data = self.exp_dir, self.cfg, self.data
        exp_dir.mkdir(parents=True, exist_ok=True)
        if data.spm_bytes is not None:
            (exp_dir / "text.model").write_bytes(data.spm_bytes)
        data.vocab.save(exp_dir / "vocab.json")
        if vocab_only:
            save_config(cfg, exp_dir / "config.yaml")
        else:
            start_run(exp_dir, cfg, self.key)
        task_cuts = data.task_cuts
        if cfg.data.speech_input == "features" and task_cuts.keys() - {"tts"}:
            # How decoding computes the same features from audio (`transcribe`, ASR of TTS output).
            c = next(iter(task_cuts[speech_task(task_cuts)]))
            info = {"type": c.features.type, "dim": c.num_features, "frame_shift": c.frame_shift, "sampling_rate": c.sampling_rate}
            atomic_write_text(exp_dir / "features.json", json.dumps(info, indent=1) + "\n")

    def build(self, dev_cuts: Path | None) -> None:
        """Dev cuts, model, optimiser, schedule, scaler, samplers and datasets, early stopping."""
        cfg, say, data, vocab = self.cfg, self.say, self.data, self.data.vocab
        self.dev = dev = read_cuts(Path(dev_cuts), "dev cuts", "fix --dev-cuts") if dev_cuts else None
        self.dev_tasks: dict[str, CutSet] = {}
        for t in cfg.tasks if dev is not None else []:
            sel = dev.filter(partial(has_labels, task=t, cfg=cfg.data))  # lazy, as `dev`
            if next(iter(sel), None) is not None:
                self.dev_tasks[t] = sel
            else:
                say(f"{dev_cuts}: no cut carries the labels of task '{t}': no dev loss for it")
        torch.manual_seed(cfg.seed)
        task_cuts, feat_dim = data.task_cuts, data.feat_dim
        self.model = model = build_model(cfg, vocab, feat_dim).to(self.device)
        rates = alignment_rates(model, vocab, task_cuts, cfg.data)
        for task, rate in rates.items():
            model.rates[TASKS.index(task)] = rate
        if cfg.model.aligned_positions:
            say("aligned positions, output tokens per input item: " + ", ".join(f"{t} {r:.3f}" for t, r in rates.items()))
        say(f"model: {model.num_params() / 1e6:.2f} M parameters, vocabulary {vocab.size} tokens ({len(vocab.text_units)} text units)")
        self.opt = adamw(model, cfg.lr, cfg.weight_decay, (0.9, 0.98), no_decay_names=("embed",))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        # Each task's sampler is seeded by the task's name (its index in TASKS), not its place in --tasks.
        self.streams = {t: TaskStream(task_cuts[t], batch_seconds(cfg, t), cfg.num_buckets, cfg.seed + TASKS.index(t), self.world, self.rank)
                        for t in cfg.tasks}
        if cfg.data.cmvn and cfg.data.cmvn_scope == "global" and feat_dim > 0:
            model.feat_stats.copy_(feature_stats(task_cuts[speech_task(task_cuts)]))
        self.datasets = {t: TaskDataset(t, vocab, cfg.data, model.feat_stats.cpu()) for t in cfg.tasks}  # batches are built on the CPU
        self.crop_frames = 0
        if cfg.class_crop_seconds > 0 and feat_dim > 0:
            frame_shift = next(iter(task_cuts[speech_task(task_cuts)])).frame_shift
            self.crop_frames = max(1, round(cfg.class_crop_seconds / frame_shift))
        self.augmenting = cfg.spec_augment.enabled or cfg.label_smoothing > 0 or self.crop_frames > 0 or cfg.perturb.enabled
        self.task_rng = random.Random(cfg.seed)
        self.step, self.hours_seen = 0, 0.0
        self.task_steps = dict.fromkeys(cfg.tasks, 0)  # optimiser steps per task (x of the comparison curves)
        # Early stopping: the best dev error so far, its step and weights, evaluations since it.
        self.stopper = EarlyStopping(cfg.patience, lambda m: dev_error(cfg.tasks[0], m, m),
                                     lambda: {k: v.detach().clone() for k, v in model.state_dict().items()})

    def resume(self) -> None:
        """Continue from the loaded checkpoint, if any (weights, optimiser, samplers, RNGs, counters)."""
        state = self.state
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            for t, s in state["streams"].get(self.rank, state["streams"][0]).items():
                if t in self.streams:
                    self.streams[t].load_state_dict(s)
            set_rng_state(self.task_rng, state["task_rng"])
            torch.set_rng_state(state["torch_rng"])
            if torch.cuda.is_available() and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            self.step, self.hours_seen = state["step"], state["hours_seen"]
            self.task_steps.update(state["task_steps"])
            self.stopper.state.update(state["best"])
            self.say(f"resumed from {list_checkpoints(self.exp_dir)[-1]} at step {self.step}")
        model = self.model
        self.net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if self.distributed else model
        self.csv_log = CsvLog(self.exp_dir / "train_log.csv", LOG_FIELDS, fresh=state is None) if self.is_main else None

    def checkpoint(self, step: int) -> None:
        # Every rank's sampler position goes into the checkpoint (gathered to rank 0).
        mine = {t: s.state_dict() for t, s in self.streams.items()}
        gathered = [None] * self.world
        if self.distributed:
            dist.all_gather_object(gathered, mine)
        else:
            gathered = [mine]
        if self.is_main:
            save_state(self.exp_dir, step, KIND, {
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict(), "streams": dict(enumerate(gathered)), "task_rng": rng_state(self.task_rng),
                "torch_rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "step": step, "task_steps": self.task_steps, "best": self.stopper.state, "hours_seen": self.hours_seen,
                "vocab_fingerprint": self.data.vocab.fingerprint, "feat_dim": self.data.feat_dim,
                "config": to_dict(self.cfg), "world_size": self.world,
            }, self.cfg.keep_last)

    def validate(self, step: int) -> dict[str, float]:
        """Dev loss of each task (its first `valid_batches` batches)."""
        if self.dev is None or not self.is_main:
            return {}
        cfg, model, device, amp = self.cfg, self.model, self.device, self.amp
        model.eval()
        dev_losses: dict[str, float] = {}
        with torch.no_grad():
            for t, tc in self.dev_tasks.items():
                losses = []
                for i, b in enumerate(SimpleCutSampler(tc, max_duration=cfg.max_duration)):
                    if i >= cfg.valid_batches:
                        break
                    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                        losses.append(float(model(to_device(self.datasets[t][b], device))["ce"]))
                dev_losses[t] = sum(losses) / len(losses)
                self.csv_log.write(step=step, split="dev", task=t, task_steps=self.task_steps[t], loss=dev_losses[t], ce=dev_losses[t])
        model.train()
        return dev_losses

    def run_eval(self, step: int) -> dict[str, float]:
        """Greedy dev CER / accuracy (`evaluate`)."""
        if self.dev is None or not self.is_main:
            return {}
        cfg = self.cfg
        m = evaluate(self.model, self.data.vocab, cfg, self.dev, cfg.tasks, cfg.eval_utts, exp_dir=self.exp_dir)
        for k, v in m.items():
            task = k.split("_")[0]
            self.csv_log.write(step=step, split="dev", task=task, task_steps=self.task_steps.get(task, ""), metric=k, value=v,
                               elapsed_s=time.time() - self.t0)
        self.say(f"step {step} dev: " + " ".join(f"{k}={v:.3f}" for k, v in m.items()))
        return m

    def train_step(self, step: int) -> tuple[str, dict[str, float]]:
        """One optimiser step of one drawn task: `grad_accum` batches of it; returns (task, mean losses)."""
        cfg, device, scaler = self.cfg, self.device, self.scaler
        task = draw_task(self.task_rng, self.data.probs)
        stats: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            batch = self.datasets[task][next(self.streams[task])]
            if self.augmenting:  # training batches only (validate() and evaluate() build their own)
                batch = augment_batch(batch, cfg.spec_augment, cfg.label_smoothing, self.crop_frames,
                                      batch_generator(cfg.seed + 7919 * self.rank, step, micro), cfg.perturb)
            batch = to_device(batch, device)
            self.hours_seen += batch["duration"] / 3600 * self.world
            sync = nullcontext() if (not self.distributed or micro == cfg.grad_accum - 1) else self.net.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=self.amp, enabled=self.amp is not None):
                    out = self.net(batch)
                scaler.scale(out["loss"] / cfg.grad_accum).backward()
            for k in ("loss", "ce", "ctc"):
                if k in out:
                    stats[k] = stats.get(k, 0.0) + float(out[k].detach()) / cfg.grad_accum
        # fp16's GradScaler skips steps with inf/NaN by design; elsewhere a non-finite loss is a fault
        if not scaler.is_enabled() and not all(map(math.isfinite, stats.values())):
            raise PolyspeechError(f"step {step + 1}: the {task} loss is {stats['loss']} on cuts {', '.join(batch['ids'][:4])}; "
                                  f"nothing more is written to {self.exp_dir} (lower lr, use precision: fp32 or bf16, check those cuts)")
        optimizer_step(self.model, self.opt, scaler, cfg.grad_clip)
        self.sched.step()
        self.step = step + 1
        return task, stats

    def after_step(self, step: int, out: tuple[str, dict[str, float]]) -> str:
        """Counters, the progress line and, every `log_every` steps, one row per task of its mean losses."""
        cfg, (task, stats) = self.cfg, out
        self.task_steps[task] += 1
        ema = self.ema
        ema[task] = stats["loss"] if task not in ema else 0.9 * ema[task] + 0.1 * stats["loss"]
        acc = self.interval.setdefault(task, {})
        for k, v in [*stats.items(), ("n", 1)]:
            acc[k] = acc.get(k, 0.0) + v
        if self.is_main and (step % cfg.log_every == 0 or step == cfg.max_steps):
            # One row per task: its mean losses over the steps since the last row.
            for t, a in sorted(self.interval.items()):
                self.csv_log.write(step=step, split="train", task=t, task_steps=self.task_steps[t], loss=a["loss"] / a["n"], ce=a["ce"] / a["n"],
                                   ctc=a["ctc"] / a["n"] if "ctc" in a else "", lr=self.sched.get_last_lr()[0], hours_seen=self.hours_seen,
                                   elapsed_s=time.time() - self.t0)
        if step % cfg.log_every == 0:
            self.interval = {}
        return " ".join(f"{t} {v:.3f}" for t, v in ema.items())

    def loop(self, progress: bool, stop_at: int | None) -> LoopEnd:
        cfg = self.cfg
        self.ema: dict[str, float] = {}
        self.interval: dict[str, dict[str, float]] = {}
        self.t0 = time.time()
        self.loop_spec = Loop("lm", cfg.max_steps, self.train_step, self.after_step, self.checkpoint, cfg.checkpoint_every,
                              dev=[Dev(cfg.valid_every, self.validate, at_max=True), Dev(cfg.eval_every, self.run_eval)],
                              stopper=self.stopper)
        self.model.train()
        return run_loop(self.loop_spec, self.step, min(cfg.max_steps, stop_at or cfg.max_steps), self.say, self.is_main and progress)

    def finish(self, end: LoopEnd) -> dict:
        """The final checkpoint, the dev loss of the last step, the kept model (the best on dev under
        `patience`), model.safetensors, the finished stamp, the averaged checkpoint, the dev metrics."""
        cfg, step, best, model = self.cfg, end.step, self.stopper.state, self.model
        stopped = self.stopper.stopped  # early stopped, in this run or in the one resumed
        self.checkpoint(step)  # the final state (all ranks: sampler positions are gathered)
        metrics: dict[str, float] = {}
        if cfg.valid_every and step % cfg.valid_every and step == cfg.max_steps:
            self.stopper.update(step, self.validate(step))  # the curves end at the last step
        finished = step >= cfg.max_steps or stopped
        saved_step, last_eval = step, None
        if cfg.patience and finished:
            if cfg.eval_every and step == cfg.max_steps and not stopped:
                last_eval = self.run_eval(step)  # the last step is a candidate too
                self.stopper.update(step, last_eval)
            if best["model"] is not None and best["step"] != step:
                model.load_state_dict(best["model"])  # keep the best model, not the last one
                saved_step, last_eval = best["step"], None
            if self.is_main:
                self.csv_log.write(step=step, split="dev", task=cfg.tasks[0], task_steps=best["step"], metric="best_step", value=best["step"])
                self.say(f"patience {cfg.patience}: trained {step} steps, keeping the best dev model (step {best['step']}, error {best['error']:.4f})")
        if self.is_main:
            exp_dir = self.exp_dir
            save_model(exp_dir, model, saved_step, self.data.vocab.fingerprint, self.data.feat_dim, trained_steps=step)
            finish_run(exp_dir, self.key, finished, exp_dir / MODEL, step=step)
            average_last(exp_dir, cfg.average_last, read_checkpoint)
            metrics = last_eval if last_eval is not None else self.run_eval(step)  # the saved model's dev metrics, evaluated once
            plot_losses(exp_dir / "train_log.csv", exp_dir / "losses.png")
            self.say(f"done: {step} steps in {time.time() - self.t0:.0f} s; log {exp_dir / 'train_log.csv'}, curves {exp_dir / 'losses.png'}")
        checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
        if self.distributed:
            # DDP keeps replicas identical by construction; check it, a silent divergence is costly.
            sums = [None] * self.world
            dist.all_gather_object(sums, checksum)
            if any(abs(s - checksum) > 1e-6 * max(1.0, abs(checksum)) for s in sums):
                raise RuntimeError(f"DDP replicas diverged: parameter checksums {sums}")
            dist.barrier()
        return {"step": step, "metrics": metrics, "param_checksum": checksum}
