"""Task datasets and samplers: which cuts serve which task, and how a cut becomes a sequence.

Each task has its own Lhotse `DynamicBucketingSampler` (batches by total duration) wrapped in
an endless `TaskStream` whose position (epoch, batches taken) is part of the checkpoint, so a
resumed run sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.lm.vocab import TASKS, Vocab

SPEECH_INPUT_TASKS = ("asr", "lid", "gid")
LABEL_NAMES = {"asr": "`text` (and speech input)", "tts": "`text` and discrete speech tokens", "lid": "`language`", "gid": "`gender` (M/F)"}


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


def normalize_features(x: torch.Tensor, cfg: DataConfig, stats: torch.Tensor | None) -> torch.Tensor:
    """CMVN of (T, D) features as configured; `stats` (2, D) = the training set's mean and std."""
    if not cfg.cmvn:
        return x
    if cfg.cmvn_scope == "global":
        return (x - stats[0]) / stats[1]
    # Log-mel values sit around -15..5; unnormalised they slow the adapter down a lot.
    return (x - x.mean(0)) / (x.std(0) + 1e-5)


def feature_stats(cuts: CutSet, max_cuts: int = 1000) -> torch.Tensor:
    """(2, D): mean and std of the features of (up to `max_cuts` of) `cuts`, for global CMVN."""
    n, s, s2 = 0, 0.0, 0.0
    for cut in list(cuts)[:max_cuts]:
        x = torch.from_numpy(np.asarray(cut.load_features(), dtype=np.float64))
        n, s, s2 = n + x.shape[0], s + x.sum(0), s2 + (x * x).sum(0)
    mean = s / max(n, 1)
    return torch.stack([mean, (s2 / max(n, 1) - mean**2).clamp_min(1e-10).sqrt()]).float()


def tts_input_ids(vocab: Vocab, text: str, language: str | None, cfg: DataConfig) -> list[int]:
    """The TTS input after `<tts>`: the language token (when configured and known), then the text units."""
    lang = vocab.lang_id(language) if cfg.tts_language_token and language else None
    return ([lang] if lang is not None else []) + vocab.encode_text(text)


def _sup(cut):
    return cut.supervisions[0] if cut.supervisions else None


def has_labels(cut, task: str, cfg: DataConfig) -> bool:
    """Does `cut` carry what `task` needs (label and the speech representation)?"""
    s = _sup(cut)
    if s is None:
        return False
    speech_in = cut.has_features if cfg.speech_input == "features" else cut.has_custom(cfg.speech_tokens or "")
    if task == "asr":
        return bool(s.text and s.text.strip()) and speech_in
    if task == "tts":
        return bool(s.text and s.text.strip()) and cfg.speech_tokens is not None and cut.has_custom(cfg.speech_tokens)
    if task == "lid":
        return bool(s.language) and speech_in
    if task == "gid":
        return s.gender in ("M", "F") and speech_in
    raise PolyspeechError(f"unknown task '{task}' (choose from {', '.join(TASKS)})")


def select_task_cuts(cuts: CutSet, tasks: list[str], cfg: DataConfig, manifest: Path, log=print) -> dict[str, CutSet]:
    """Per task, the cuts carrying its labels within the duration limits; report what is dropped."""
    too_long = [c for c in cuts if not cfg.min_cut_duration <= c.duration <= cfg.max_cut_duration]
    if too_long:
        log(f"{manifest}: dropped {len(too_long)} cuts outside [{cfg.min_cut_duration}, {cfg.max_cut_duration}] s "
            f"({sum(c.duration for c in too_long) / 3600:.3f} h), e.g. {too_long[0].id} ({too_long[0].duration:.1f} s)")
    kept = CutSet.from_cuts(c for c in cuts if cfg.min_cut_duration <= c.duration <= cfg.max_cut_duration)
    out = {}
    for task in tasks:
        sel = kept.filter(lambda c: has_labels(c, task, cfg)).to_eager()
        if len(sel) == 0:
            extra = " and --speech-tokens / speech_tokens set" if task == "tts" else ""
            raise PolyspeechError(f"task '{task}' needs cuts with {LABEL_NAMES[task]}{extra}, but no cut in {manifest} has them "
                                  f"(drop '{task}' from --tasks or use a manifest with these labels)")
        out[task] = sel
    return out


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
    """Lhotse-style map dataset: a CutSet (one sampler batch) -> the model's batch dict."""

    def __init__(self, task: str, vocab: Vocab, cfg: DataConfig, stats: torch.Tensor | None = None) -> None:
        self.task, self.vocab, self.cfg, self.stats = task, vocab, cfg, stats

    def _speech_tokens(self, cut) -> list[int]:
        return self.vocab.speech_ids(cut.load_custom(self.cfg.speech_tokens))

    def _feats(self, cut) -> torch.Tensor:
        return normalize_features(torch.from_numpy(np.asarray(cut.load_features(), dtype=np.float32)), self.cfg, self.stats)

    def __getitem__(self, cuts: CutSet) -> dict:
        v, task = self.vocab, self.task
        prefix, suffix, feats, ctc = [], [], [], []
        for cut in cuts:
            s = _sup(cut)
            pre = [v.task_id(task)]
            if task == "tts":
                pre += tts_input_ids(v, s.text, s.language, self.cfg)
                out = self._speech_tokens(cut)
            else:
                if self.cfg.speech_input == "features":
                    feats.append(self._feats(cut))
                else:
                    pre += self._speech_tokens(cut)
                if task == "asr":
                    out = v.encode_text(s.text)
                    ctc.append(torch.tensor(out))
                elif task == "lid":
                    out = [v.lang_id(s.language) if v.lang_id(s.language) is not None else v.unk]
                else:
                    out = [v.gender_id(s.gender)]
            prefix.append(torch.tensor(pre))
            suffix.append(torch.tensor([v.sep] + out + [v.eos]))
        batch = {"task": task, "prefix": prefix, "suffix": suffix, "ids": [c.id for c in cuts],
                 "duration": sum(c.duration for c in cuts), "feats": None, "ctc_targets": ctc or None}
        if feats:
            batch["feat_lens"] = torch.tensor([f.shape[0] for f in feats])
            batch["feats"] = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
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
        self.cuts, self.epoch, self.pos = cuts, 0, 0
        # Manifests here are read eagerly (they are small next to the audio); silence Lhotse's hint.
        warnings.filterwarnings("ignore", message="You are using DynamicBucketingSampler with an eagerly read CutSet")
        self.sampler = DynamicBucketingSampler(
            cuts, max_duration=max_duration, num_buckets=max(2, min(num_buckets, len(cuts) // 4)), shuffle=True,
            drop_last=False, seed=seed, world_size=world_size, rank=rank, num_cuts_for_bins_estimate=min(len(cuts), 5000),
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
        raise PolyspeechError(f"the sampler yields no batch ({len(self.cuts)} cuts): lower the number of processes or raise max_duration")

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos, self._it = state["epoch"], state["pos"], None
