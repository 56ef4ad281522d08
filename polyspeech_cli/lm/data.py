"""Task datasets and samplers: which cuts serve which task, and how a cut becomes a sequence.

Each task has its own Lhotse `DynamicBucketingSampler` (batches by total duration) wrapped in
an endless `TaskStream` whose position (epoch, batches taken) is part of the checkpoint, so a
resumed run sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler

from polyspeech_cli.augment import speed_perturb, warp_feature_axis
from polyspeech_cli.codec.data import load_cut_features
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.lm.tasks import LABEL_NAMES, cut_input, has_labels, make_batch, target_ids
from polyspeech_cli.lm.vocab import Vocab


@dataclass
class DataConfig:
    """Speech representation per side; `speech_tokens` is a `cut.custom` key (sset/encodec/kmeans)."""

    speech_input: str = "features"  # features (cut.features: fbank/HuBERT) or tokens (speech_tokens)
    speech_tokens: str | None = None  # discrete tokens for TTS output (and for `speech_input: tokens`)
    speech_codebook_size: int = 0  # 0 = read from <token dir>/<type>.json
    speech_codebooks: int = 1  # keep the first N codebooks (flattened per frame); 1 = first only
    cmvn: bool = True  # mean/variance normalisation of continuous features
    # utterance: each utterance's own statistics (removes channel and speaker averages);
    # global: the training set's (ESPnet's global_mvn; keeps speaker differences, e.g. for GID)
    cmvn_scope: str = "utterance"
    max_cut_duration: float = 20.0  # longer cuts are dropped (and reported)
    min_cut_duration: float = 0.3
    # TTS input `<tts> <lang> text`: languages sharing a script pronounce the same letters differently.
    tts_language_token: bool = True


CMVN_SCOPES = ("utterance", "global")


@dataclass
class SpecAugmentConfig:
    """SpecAugment-style masking of the continuous input features of *training* batches only
    (ESPnet's `specaug` without time warping; never applied to dev batches or decoding). Masked
    values are set to 0, the mean of the CMVN-normalised features. Off while both counts are 0."""

    num_freq_masks: int = 0  # ESPnet num_freq_mask
    freq_width: int = 27  # each frequency mask: width uniform in [0, freq_width] bins (ESPnet freq_mask_width_range 0..27)
    num_time_masks: int = 0  # ESPnet num_time_mask
    # each time mask: width uniform in [0, time_width_ratio x the utterance's frames] (ESPnet time_mask_width_ratio_range 0..0.05)
    time_width_ratio: float = 0.05

    @property
    def enabled(self) -> bool:
        return self.num_freq_masks > 0 or self.num_time_masks > 0


@dataclass
class VoicePerturbConfig:
    """New voices from the training voices, on the fly, for the speech-input tasks' *training*
    batches only: each utterance gets its own random speed perturbation (time stretch + the same
    frequency scaling, as faster playback) and vocal-tract-length warp of the fbank's feature axis
    (VTLP). Factors are drawn log-uniformly in [1/(1+x), 1+x]. Off while both are 0."""

    speed: float = 0.0  # e.g. 0.1: rates 0.91..1.1
    vtlp: float = 0.0  # e.g. 0.1: feature-axis warp 0.91..1.1

    @property
    def enabled(self) -> bool:
        return self.speed > 0 or self.vtlp > 0


def check_augment(spec: SpecAugmentConfig, label_smoothing: float, class_crop_seconds: float,
                  perturb: VoicePerturbConfig = VoicePerturbConfig()) -> None:
    """One-line errors for out-of-range augmentation keys."""
    if not (0.0 <= perturb.speed < 1.0 and 0.0 <= perturb.vtlp < 1.0):
        raise PolyspeechError(f"perturb: speed and vtlp must be in [0, 1), got {perturb} (fix the config)")
    if min(spec.num_freq_masks, spec.freq_width, spec.num_time_masks) < 0 or not 0.0 <= spec.time_width_ratio <= 1.0:
        raise PolyspeechError(f"spec_augment: counts and freq_width must be >= 0 and time_width_ratio in [0, 1], got {spec} (fix the config)")
    if not 0.0 <= label_smoothing < 1.0:
        raise PolyspeechError(f"label_smoothing must be in [0, 1), got {label_smoothing} (fix the config)")
    if class_crop_seconds < 0:
        raise PolyspeechError(f"class_crop_seconds must be >= 0 (0 = off), got {class_crop_seconds} (fix the config)")


def _randint(lo: int, hi: int, g: torch.Generator) -> int:
    """Uniform integer in [lo, hi] (inclusive) from `g`."""
    return lo + int(torch.randint(0, hi - lo + 1, (1,), generator=g))


def spec_augment(feats: torch.Tensor, lens: torch.Tensor, cfg: SpecAugmentConfig, g: torch.Generator) -> torch.Tensor:
    """A masked copy of padded (B, T, F) features; masks stay inside each row's `lens` frames."""
    out = feats.clone()
    n_freq = feats.shape[2]
    for i, n in enumerate(int(x) for x in lens):
        for _ in range(cfg.num_freq_masks):
            w = min(_randint(0, cfg.freq_width, g), n_freq)
            f0 = _randint(0, n_freq - w, g)
            out[i, :n, f0 : f0 + w] = 0.0
        max_w = int(cfg.time_width_ratio * n)
        for _ in range(cfg.num_time_masks):
            w = _randint(0, max_w, g)
            t0 = _randint(0, n - w, g)
            out[i, t0 : t0 + w, :] = 0.0
    return out


def _log_uniform(x: float, g: torch.Generator) -> float:
    """A factor drawn log-uniformly in [1/(1+x), 1+x]."""
    return float(torch.exp((torch.rand(1, generator=g) * 2 - 1) * torch.log1p(torch.tensor(x))))


def perturb_voices(feats: torch.Tensor, lens: torch.Tensor, cfg: VoicePerturbConfig, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of padded (B, T, F) fbank with its own speed and VTLP factors; re-padded, new lengths."""
    rows = []
    for i, n in enumerate(int(x) for x in lens):
        x = feats[i, :n]
        if cfg.speed > 0:
            x = speed_perturb(x, _log_uniform(cfg.speed, g))
        if cfg.vtlp > 0:
            x = warp_feature_axis(x, _log_uniform(cfg.vtlp, g))
        rows.append(x)
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), torch.tensor([r.shape[0] for r in rows])


def random_crop(feats: torch.Tensor, lens: torch.Tensor, max_frames: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows longer than `max_frames` cut to a random window of `max_frames` frames; re-padded."""
    rows = []
    for i, n in enumerate(int(x) for x in lens):
        start = _randint(0, n - max_frames, g) if n > max_frames else 0
        rows.append(feats[i, start : start + min(n, max_frames)])
    new_lens = torch.tensor([r.shape[0] for r in rows])
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), new_lens


def augment_batch(batch: dict, spec: SpecAugmentConfig, label_smoothing: float, crop_frames: int, g: torch.Generator,
                  perturb: VoicePerturbConfig = VoicePerturbConfig()) -> dict:
    """A training batch with the configured augmentation (the trainer calls it on training
    batches only; dev batches and decoding never pass here): new voices (speed, VTLP), random
    crops of class-task inputs (`crop_frames` > 0, LID/GID), SpecAugment masks, and the label
    smoothing the loss reads."""
    from polyspeech_cli.lm.tasks import CLASS_TASKS

    batch = dict(batch)
    if batch.get("feats") is not None:
        if perturb.enabled:
            batch["feats"], batch["feat_lens"] = perturb_voices(batch["feats"], batch["feat_lens"], perturb, g)
        if crop_frames > 0 and batch["task"] in CLASS_TASKS:
            batch["feats"], batch["feat_lens"] = random_crop(batch["feats"], batch["feat_lens"], crop_frames, g)
        if spec.enabled:
            batch["feats"] = spec_augment(batch["feats"], batch["feat_lens"], spec, g)
    if label_smoothing > 0:
        batch["label_smoothing"] = label_smoothing
    return batch


def normalize_features(x: torch.Tensor, cfg: DataConfig, stats: torch.Tensor | None) -> torch.Tensor:
    """CMVN of (T, D) features as configured; `stats` (2, D) = the training set's mean and std."""
    if not cfg.cmvn:
        return x
    if cfg.cmvn_scope == "global":
        return (x - stats[0]) / stats[1]
    # Log-mel values sit around -15..5; unnormalised they slow the adapter down a lot.
    return (x - x.mean(0)) / (x.std(0) + 1e-5)


def feature_stats(cuts: CutSet, max_cuts: int = 1000) -> torch.Tensor:
    """(2, D): mean and std of the features of (the first `max_cuts` of) `cuts`, for global CMVN."""
    from itertools import islice

    n, s, s2 = 0, 0.0, 0.0
    for cut in islice(cuts, max_cuts):  # lazy cut sets: only these cuts are read
        x = torch.from_numpy(np.asarray(cut.load_features(), dtype=np.float64))
        n, s, s2 = n + x.shape[0], s + x.sum(0), s2 + (x * x).sum(0)
    mean = s / max(n, 1)
    return torch.stack([mean, (s2 / max(n, 1) - mean**2).clamp_min(1e-10).sqrt()]).float()


def select_task_cuts(cuts: CutSet, tasks: list[str], cfg: DataConfig, manifest: Path, log=print) -> dict[str, CutSet]:
    """Per task, the cuts carrying its labels within the duration limits; report what is dropped.

    The result is lazy when `cuts` is (a filter over it, re-read on every pass), so a large
    manifest is never held in memory; the checks take one pass over the cut metadata."""
    def in_range(c) -> bool:
        return cfg.min_cut_duration <= c.duration <= cfg.max_cut_duration

    n_out, h_out, first_out = 0, 0.0, None
    found = dict.fromkeys(tasks, False)
    for c in cuts:
        if not in_range(c):
            n_out, h_out, first_out = n_out + 1, h_out + c.duration, first_out or c
            continue
        for task in tasks:
            found[task] = found[task] or has_labels(c, task, cfg)
    if n_out:
        log(f"{manifest}: dropped {n_out} cuts outside [{cfg.min_cut_duration}, {cfg.max_cut_duration}] s "
            f"({h_out / 3600:.3f} h), e.g. {first_out.id} ({first_out.duration:.1f} s)")
    for task in tasks:
        if not found[task]:
            extra = " and --speech-tokens / speech_tokens set" if task == "tts" else ""
            raise PolyspeechError(f"task '{task}' needs cuts with {LABEL_NAMES[task]}{extra}, but no cut in {manifest} has them "
                                  f"(drop '{task}' from --tasks or use a manifest with these labels)")
    from functools import partial

    kept = cuts.filter(in_range)
    return {task: kept.filter(partial(has_labels, task=task, cfg=cfg)) for task in tasks}


def codebook_size(cuts: CutSet, cfg: DataConfig) -> int:
    """The speech token codebook size: from the config, else from `<token dir>/<type>.json`."""
    if cfg.speech_codebook_size > 0:
        return cfg.speech_codebook_size
    cut = next(c for c in cuts if c.has_custom(cfg.speech_tokens))
    storage = Path(getattr(cut.custom[cfg.speech_tokens], "array", cut.custom[cfg.speech_tokens]).storage_path)
    for d in (storage, storage.parent):
        info = d / f"{cfg.speech_tokens}.json"
        if info.is_file():
            return int(json.loads(info.read_text())["codebook_size"])
    raise PolyspeechError(f"no {cfg.speech_tokens}.json next to the token storage {storage} (set speech_codebook_size in the config)")


class TaskDataset:
    """Lhotse-style map dataset: a CutSet (one sampler batch) -> the model's batch dict (see lm/tasks.py)."""

    def __init__(self, task: str, vocab: Vocab, cfg: DataConfig, stats: torch.Tensor | None = None) -> None:
        self.task, self.vocab, self.cfg, self.stats = task, vocab, cfg, stats

    def __getitem__(self, cuts: CutSet) -> dict:
        v, task, cfg = self.vocab, self.task, self.cfg
        cuts = list(cuts)
        # load_cut_features refuses NaN/inf features with a one-line error naming the cut
        inputs = [cut_input(v, task, cfg, c, load_features=load_cut_features) for c in cuts]
        batch = make_batch(v, task, inputs, [target_ids(v, task, c, cfg) for c in cuts],
                           normalise=lambda x: normalize_features(x, cfg, self.stats))
        batch["ids"], batch["duration"] = [c.id for c in cuts], sum(c.duration for c in cuts)
        return batch


def to_device(batch: dict, device: torch.device) -> dict:
    def mv(x):
        if isinstance(x, torch.Tensor):
            return x.to(device)
        if isinstance(x, list) and x and isinstance(x[0], torch.Tensor):
            return [t.to(device) for t in x]
        return x

    return {k: mv(x) for k, x in batch.items()}


class TaskStream:
    """An endless stream of batches (CutSets) for one task; restartable at (epoch, position)."""

    def __init__(self, cuts: CutSet, max_duration: float, num_buckets: int, seed: int, world_size: int = 1, rank: int = 0) -> None:
        # A lazy CutSet is streamed: the sampler holds at most its buffer (20000 cuts' metadata,
        # Lhotse's default), never the whole manifest; counting the cuts is one metadata pass.
        n = sum(1 for _ in cuts) if cuts.is_lazy else len(cuts)
        self.cuts, self.num_cuts, self.epoch, self.pos = cuts, n, 0, 0
        self.sampler = DynamicBucketingSampler(
            cuts, max_duration=max_duration, num_buckets=max(2, min(num_buckets, n // 4)), shuffle=True,
            drop_last=False, seed=seed, world_size=world_size, rank=rank, num_cuts_for_bins_estimate=min(n, 5000),
        )
        self._it = None

    def _start(self, skip: int) -> None:
        self.sampler.set_epoch(self.epoch)
        self._it = iter(self.sampler)
        for _ in range(skip):  # deterministic fast-forward: only cut metadata is touched
            next(self._it)

    def __next__(self) -> CutSet:
        if self._it is None:
            self._start(self.pos)
        for attempt in range(2):
            try:
                batch = next(self._it)
                self.pos += 1
                return batch
            except StopIteration:
                if attempt == 1 or self.pos == 0:
                    break
                self.epoch, self.pos = self.epoch + 1, 0
                self._start(0)
        raise PolyspeechError(f"the sampler yields no batch ({self.num_cuts} cuts): lower the number of processes or raise max_duration")

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos, self._it = state["epoch"], state["pos"], None
