"""Training pairs for the speech decoder: (features of A, log-mel of A, a prompt from B ≠ A, same speaker).

Each cut is loaded once (features normalised per utterance and resampled to the mel frame rate,
target log-mel computed from the audio) and kept in memory: the decoder is small and fast, so
re-reading audio every step would dominate a CPU run. Batches are drawn from an RNG seeded by
(seed, step), so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet

from polyspeech_cli.codec.data import load_cut_features, normalize, read_cuts
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.vocoder.mel import MelConfig, MelFrontend
from polyspeech_cli.vocoder.model import resample_time


@dataclass
class Utterance:
    cut_id: str
    speaker: str
    feats: np.ndarray  # (T, D) normalised, at the mel frame rate
    mel: np.ndarray  # (T, n_mels) log-mel target
    audio: np.ndarray | None  # (N,) kept only when a neural vocoder is trained


@dataclass
class UtteranceSet:
    utts: list[Utterance]
    feat_dim: int
    frame_shift: float  # of the input features, seconds
    feature_type: str

    def by_speaker(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, u in enumerate(self.utts):
            groups[u.speaker].append(i)
        return dict(groups)


def load_utterances(path: Path, mel_cfg: MelConfig, normalization: str, keep_audio: bool = False,
                    max_cuts: int = 0, progress: str | bool | None = None) -> UtteranceSet:
    """Read a cuts manifest with features and audio into memory (see module doc); `progress`:
    a bar description, None for the default one, False for no bar."""
    from polyspeech_cli.console import track

    cuts: CutSet = read_cuts(path)
    cut_list = sorted(cuts, key=lambda c: c.id)[: max_cuts or None]
    if not cut_list:
        raise PolyspeechError(f"{path}: the cuts manifest is empty")
    frontend = MelFrontend(mel_cfg)
    where = f"{path}: "
    utts, dim = [], None
    bar = progress if isinstance(progress, str) else f"loading {Path(path).name}"
    for cut in track(cut_list, bar) if progress is not False else cut_list:
        if cut.sampling_rate != mel_cfg.sample_rate:
            raise PolyspeechError(f"{where}cut '{cut.id}' is {cut.sampling_rate} Hz, the vocoder config wants "
                                  f"{mel_cfg.sample_rate} Hz (resample the corpus or change mel.sample_rate)")
        x = load_cut_features(cut, where)
        if dim is None:
            dim = x.shape[1]
        elif x.shape[1] != dim:
            raise PolyspeechError(f"{where}cut '{cut.id}': feature dim {x.shape[1]} differs from the first cut's {dim}")
        try:
            audio = cut.load_audio()[0].astype(np.float32)
        except Exception as e:
            raise PolyspeechError(f"{where}cut '{cut.id}': cannot load its audio ({type(e).__name__}: {e})") from e
        with torch.no_grad():
            mel = frontend(torch.from_numpy(audio))
            feats = resample_time(torch.from_numpy(normalize(x, normalization)), mel.shape[0])
        speaker = cut.supervisions[0].speaker if cut.supervisions and cut.supervisions[0].speaker else cut.id
        utts.append(Utterance(cut.id, speaker, feats.numpy(), mel.numpy(), audio if keep_audio else None))
    first = cut_list[0].features
    return UtteranceSet(utts, int(dim), float(first.frame_shift), str(first.type))


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


def warp_feature_axis(x: np.ndarray, alpha: float) -> np.ndarray:
    """Stretch (alpha > 1) or squeeze the feature axis of (T, D) by linear interpolation: for
    spectral features this moves formants and harmonics like a different vocal tract (VTLP)."""
    d = x.shape[1]
    src = np.clip(np.arange(d) / alpha, 0, d - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, d - 1)
    frac = (src - lo).astype(np.float32)
    return x[:, lo] * (1 - frac) + x[:, hi] * frac


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
            x = warp_feature_axis(x, float(np.exp(rng.uniform(-1, 1) * np.log1p(feature_warp))))
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


def mel_stats(data: UtteranceSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-band mean and std of the training log-mels (the decoder predicts in this normalised space)."""
    allm = np.concatenate([u.mel for u in data.utts], 0).astype(np.float64)
    return torch.from_numpy(allm.mean(0)).float(), torch.from_numpy(allm.std(0)).float()
