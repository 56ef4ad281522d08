"""TTS scoring: speaker similarity (SECS) with a pretrained speaker encoder that is not part of our
model, and mel-cepstral distortion (MCD, `polyspeech_cli.score.mcd`) against the real utterance.

Resemblyzer bundles its GE2E weights in the wheel, so it works offline. It is in the `eval` extra
(`pip install -e ".[eval]"`; it needs setuptools<81 because webrtcvad imports pkg_resources).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from polyspeech_cli.audio import read_audio
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.score.mcd import score_mcd


def _encoder():
    try:
        from resemblyzer import VoiceEncoder, preprocess_wav
        from resemblyzer.hparams import sampling_rate
    except ImportError as e:
        raise PolyspeechError(f"TTS speaker similarity needs resemblyzer ({e}); install it with: pip install -e '.[eval]'") from None
    return VoiceEncoder("cpu", verbose=False), preprocess_wav, int(sampling_rate)


# Embeddings by file content: every TTS decode writes its own copy of the same real recordings
# (`ref/`), so a report over several decodes (the loss waterfall) embeds each real utterance once.
_EMBEDDINGS: dict[str, np.ndarray] = {}


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the block. The speaker encoder (a small LSTM over one
    utterance's partial windows at a time) runs faster on one than on two: 200 utterances of the
    egs/mini test split took 21.9 s on 1 thread vs 32.5 s on 2 (2-core EPYC)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@_one_thread()
def embed_files(paths: list[str]) -> dict[str, np.ndarray]:
    """L2-normalised speaker embedding of each audio file."""
    model = None  # (encoder, preprocess, rate), loaded at the first file not seen before
    out = {}
    for p in dict.fromkeys(paths):
        key = hashlib.sha1(Path(p).read_bytes()).hexdigest() if Path(p).is_file() else p
        if key not in _EMBEDDINGS:
            model = model or _encoder()
            encoder, preprocess, rate = model
            wav, _ = read_audio(p, "audio for speaker similarity", "re-run the TTS decode that wrote it", sampling_rate=rate)
            # source_sr=None: already at the encoder's rate (resampled by polyspeech_cli.audio), so resemblyzer
            # does not resample again with its own (librosa) resampler
            _EMBEDDINGS[key] = encoder.embed_utterance(preprocess(wav, source_sr=None))
        out[p] = _EMBEDDINGS[key]
    return out


def score_secs(rows: list[dict], name: str) -> dict:
    """SECS of synthesized vs real audio of the target speaker, next to SECS between different real speakers."""
    emb = embed_files([r["wav"] for r in rows] + [r["reference_wav"] for r in rows])
    same = [float(emb[r["wav"]] @ emb[r["reference_wav"]]) for r in rows]
    by_speaker: dict[str, str] = defaultdict(str)
    for r in rows:
        by_speaker[r["speaker"]] = by_speaker[r["speaker"]] or r["reference_wav"]
    cross = [float(emb[a] @ emb[b]) for a, b in itertools.combinations(by_speaker.values(), 2)]
    result = {"secs": float(np.mean(same)), "secs_between_speakers": float(np.mean(cross)) if cross else float("nan")}
    result["markdown"] = (
        "|dataset|Snt|SECS (synth vs target speaker)|SECS (different real speakers)|\n|---|---|---|---|\n"
        f"|{name}|{len(rows)}|{result['secs']:.3f}|{result['secs_between_speakers']:.3f}|\n"
    )
    return result


def score_tts(rows: list[dict], name: str) -> dict:
    """SECS and MCD of a TTS decode. Rows whose `reference_wav` is empty/null (no real recording of
    that text and voice) are skipped by both and counted, so one such row does not stop the set."""
    scored = [r for r in rows if r.get("reference_wav")]
    skipped = len(rows) - len(scored)
    if not scored:
        raise PolyspeechError(f"{name}: none of its {len(rows)} TTS rows has a reference_wav (real audio of the same text "
                              "and voice), so there is nothing to score SECS or MCD against; decode a set with recordings")
    result = score_secs(scored, name) | score_mcd(scored)
    result["no_reference"] = skipped
    result["markdown"] = (
        "|dataset|Snt|SECS (synth vs target speaker)|SECS (different real speakers)|MCD dB (DTW)|\n|---|---|---|---|---|\n"
        f"|{name}|{len(scored)}|{result['secs']:.3f}|{result['secs_between_speakers']:.3f}|{result['mcd']:.2f}|\n"
    )
    if skipped:
        result["markdown"] += f"\n{skipped} of {len(rows)} utterances have no reference_wav and are not scored.\n"
    return result
