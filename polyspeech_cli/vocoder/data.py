"""Training pairs for the speech decoder: (features of A, log-mel of A, a prompt from B ≠ A, same speaker).

The training cuts are streamed from storage, never held in memory: one pass over the lazily read
manifest checks its metadata and indexes it (`codec.data.CutIndex`: a byte offset and a speaker per
cut, the cut's JSON in an anonymous temporary file). Each batch then loads the features and audio
of its own cuts (features normalised per utterance and resampled to the mel frame rate, target
log-mel computed from the audio), through a bounded cache (`cache_mb`): a set that fits is read
from disk once, a larger one costs at most the cache. Batches are drawn from
an RNG seeded by (seed, step), so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lhotse.cut import Cut

from polyspeech_cli.codec.data import CutIndex, LazySequence, load_cut_features, normalize
from polyspeech_cli.audio import cut_audio
from polyspeech_cli.augment import resample_time, warp_feature_axis
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.vocoder.mel import MelConfig, MelFrontend


@dataclass
class Utterance:
    cut_id: str
    speaker: str
    feats: np.ndarray  # (T, D) normalised, at the mel frame rate
    mel: np.ndarray  # (T, n_mels) log-mel target
    audio: np.ndarray | None  # (N,) kept only when a neural vocoder is trained


def load_utterance(cut: Cut, frontend: MelFrontend, normalization: str, keep_audio: bool, where: str) -> Utterance:
    """One cut's training data: normalised features at the mel rate, log-mel target (and audio)."""
    x = load_cut_features(cut, where)
    rate = frontend.cfg.sample_rate
    try:
        # at the mel's rate: a 16 kHz corpus trains a decoder for a 22.05 kHz vocoder (polyspeech_cli.audio's resampler)
        audio = cut_audio(cut, rate if cut.sampling_rate != rate else None)
    except PolyspeechError as e:  # names the cut and why
        raise PolyspeechError(f"{where}{e}") from e
    with torch.no_grad():
        mel = frontend(torch.from_numpy(audio))
        feats = resample_time(torch.from_numpy(normalize(x, normalization)), mel.shape[0])
    speaker = cut.supervisions[0].speaker if cut.supervisions and cut.supervisions[0].speaker else cut.id
    return Utterance(cut.id, speaker, feats.numpy(), mel.numpy(), audio if keep_audio else None)


@dataclass
class UtteranceSet:
    utts: Sequence[Utterance]  # a list (loaded) or a LazySequence (each access loads from storage)
    feat_dim: int
    frame_shift: float  # of the input features, seconds
    feature_type: str
    speakers: list[str]  # speaker of each utterance (metadata: no loading)

    def by_speaker(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.speakers):
            groups[s].append(i)
        return dict(groups)


def stream_utterances(path: Path, mel_cfg: MelConfig, normalization: str, keep_audio: bool = False,
                      max_cuts: int = 0, cache_mb: int = 0) -> UtteranceSet:
    """The utterances of a cuts manifest (sorted by cut id, the first `max_cuts` if > 0), each
    loaded from storage when accessed and kept in a cache of at most `cache_mb` (see module doc);
    metadata errors are raised here."""
    where = f"{path}: "

    # audio at another rate than mel.sample_rate is resampled when loaded (load_utterance)
    index = CutIndex(Path(path), sort=True, max_cuts=max_cuts)
    frontend = MelFrontend(mel_cfg)
    utts = LazySequence(len(index), lambda i: load_utterance(index.cut(i), frontend, normalization, keep_audio, where),
                        cache_mb * 2**20)
    return UtteranceSet(utts, index.dim, index.frame_shift, index.feature_type, index.speakers())  # type: ignore[arg-type]


def load_utterances(path: Path, mel_cfg: MelConfig, normalization: str, keep_audio: bool = False,
                    max_cuts: int = 0, progress: str | bool | None = None) -> UtteranceSet:
    """The same utterances loaded into memory (dev sets, evaluation: `max_cuts` of them); `progress`:
    a bar description, None for the default one, False for no bar."""
    from polyspeech_cli.console import track

    streamed = stream_utterances(path, mel_cfg, normalization, keep_audio, max_cuts)
    bar = progress if isinstance(progress, str) else f"loading {Path(path).name}"
    utts = list(track(streamed.utts, bar) if progress is not False else streamed.utts)
    return UtteranceSet(utts, streamed.feat_dim, streamed.frame_shift, streamed.feature_type, streamed.speakers)


def prompt_index(groups: dict[str, list[int]], i: int, speaker: str, rng: np.random.Generator | None) -> int:
    """A different utterance of the same speaker (random, or the next one when rng is None); i itself
    only when the speaker has a single utterance."""
    others = [j for j in groups[speaker] if j != i]
    if not others:
        return i
    if rng is None:
        return others[0] if others[-1] < i else next(j for j in others if j > i)
    return others[int(rng.integers(len(others)))]


def _crop(n: int, length: int, rng: np.random.Generator) -> slice:
    if n <= length:
        return slice(0, n)
    start = int(rng.integers(n - length + 1))
    return slice(start, start + length)


def _pad(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (T_i, D) arrays into (B, T_max, D) zeros-padded + (B, T_max) bool mask."""
    t = max(a.shape[0] for a in arrays)
    out = np.zeros((len(arrays), t, arrays[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(arrays), t), dtype=bool)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        mask[i, : len(a)] = True
    return torch.from_numpy(out), torch.from_numpy(mask)


def decoder_batch(data: UtteranceSet, groups: dict[str, list[int]], seed: int, step: int, batch_size: int,
                  segment_frames: int, prompt_frames: int, feature_warp: float = 0.0) -> dict[str, torch.Tensor]:
    """The batch of optimiser step `step`: random crops of random utterances and their prompts.

    `feature_warp` > 0 warps each input's feature axis by a random factor in [1/(1+w), 1+w], so the
    speaker's formant scale must come from the prompt rather than from the content features."""
    rng = np.random.default_rng([seed, step])
    feats, mels, prompts, speakers = [], [], [], []
    names = sorted(groups)
    for _ in range(batch_size):
        i = int(rng.integers(len(data.utts)))
        u = data.utts[i]
        s = _crop(len(u.mel), segment_frames, rng)
        x = u.feats[s]
        if feature_warp > 0:
            x = warp_feature_axis(torch.from_numpy(x), float(np.exp(rng.uniform(-1, 1) * np.log1p(feature_warp)))).numpy()
        feats.append(x)
        mels.append(u.mel[s])
        speakers.append(names.index(u.speaker))
        p = data.utts[prompt_index(groups, i, u.speaker, rng)]
        prompts.append(p.mel[_crop(len(p.mel), prompt_frames, rng)])
    x, mask = _pad(feats)
    y, _ = _pad(mels)
    pr, pmask = _pad(prompts)
    return {"feats": x, "mel": y, "mask": mask, "prompt": pr, "prompt_mask": pmask, "speaker": torch.tensor(speakers)}


def vocoder_batch(data: UtteranceSet, seed: int, step: int, batch_size: int, segment_frames: int,
                  hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HiFi-GAN batch: aligned (log-mel (B, F, n_mels), audio (B, F * hop)) segments of F frames.

    Mel frame k is centred on sample k * hop, so frames [a, a+F) cover samples [a*hop, (a+F)*hop).
    Utterances shorter than the segment are zero-padded (silence: log floor, zeros)."""
    rng = np.random.default_rng([seed, 1_000_003, step])
    mels, waves = [], []
    for _ in range(batch_size):
        u = data.utts[int(rng.integers(len(data.utts)))]
        assert u.audio is not None
        s = _crop(len(u.mel), segment_frames, rng)
        m = u.mel[s]
        w = u.audio[s.start * hop : s.start * hop + segment_frames * hop]
        m = np.concatenate([m, np.full((segment_frames - len(m), m.shape[1]), m.min(), np.float32)]) if len(m) < segment_frames else m
        w = np.pad(w, (0, segment_frames * hop - len(w)))
        mels.append(m)
        waves.append(w)
    return torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(waves).astype(np.float32))


def mel_stats(data: UtteranceSet, max_utts: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-band mean and std of the training log-mels (the decoder predicts in this normalised
    space), over at most `max_utts` utterances evenly spaced in the set, accumulated one at a time."""
    n = len(data.utts)
    picks = range(n) if n <= max_utts else np.linspace(0, n - 1, max_utts).round().astype(int)
    count, s, s2 = 0, 0.0, 0.0
    for i in picks:
        m = data.utts[int(i)].mel.astype(np.float64)
        count, s, s2 = count + len(m), s + m.sum(0), s2 + (m * m).sum(0)
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean**2, 0.0))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()
