"""What one `polyspeech decode` is (its options) and where it lands, with the check whether that
exact decode is already done: no torch, so a recipe re-run that finds its decodes finished pays no
model and no torch import."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.lm.files import checkpoint_path
from polyspeech_cli.stamps import is_fresh, stamp_key

STAMP = "decode.json"  # written last: the directory holds a finished decode
ASR_LM_WEIGHT = 0.3  # the n-gram's weight egs/mini chose on its dev set (README, "Decoding"): `evaluate --ngram`'s default


@dataclass
class TTSOptions:
    # Nucleus 0.5 + repetition-aware sampling (window 10): chosen on the egs/mini dev split (README,
    # "Decoding"): plain sampling drifts on its own errors, greedy loops.
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.5
    # Output length bounds, as multiples of the expected length (the training data's speech tokens
    # per text unit times the number of text units): a sampled eos cannot come before min_ratio.
    min_ratio: float = 0.5
    max_ratio: float = 2.0
    seed: int = 0
    # Repetition-aware sampling (decode/search.py SamplingConfig; 0 = off).
    repetition_window: int = 10
    repetition_threshold: float = 0.1


@dataclass
class DecodeOptions:
    task: str
    set_name: str = "test"
    batch_size: int = 8
    beam_size: int = 1
    length_penalty: float = 0.0
    ctc_weight: float = 0.0  # ASR beam: joint CTC/attention decoding weight (CTC prefix scores; 0 = attention only)
    max_len_ratio: float = 2.0  # ASR: at most this x the expected text length (training rate x speech positions)
    ngram: str | None = None  # ASR joint beam: a character n-gram (`train ngram`) fused with weight lm_weight
    lm_weight: float = 0.0
    checkpoint: str | None = None
    tts: TTSOptions = field(default_factory=TTSOptions)
    prompt: str | None = None
    codec: str | None = None
    vocoder: str | None = None
    # TTS: feed the back end the cut's real data instead of sampled tokens (`Oracle.parse`: tokens,
    # books:K, features, mel), scored like any TTS output: the rows of the back end's loss waterfall
    oracle: str | None = None


def decode_dir(exp_dir: Path, opts: DecodeOptions, out_root: Path | None = None) -> Path:
    """`<out_root>/decode_<task>_<set>` (default: in the exp dir)."""
    return Path(out_root or exp_dir) / f"decode_{opts.task}_{opts.set_name}"


def decode_key(exp_dir: Path, cuts_path: Path, opts: DecodeOptions) -> tuple[Path, dict]:
    """The checkpoint the decode loads and its stamp key: the options + the checkpoint, cuts (and
    n-gram) files; any change re-decodes."""
    checkpoint = checkpoint_path(Path(exp_dir), Path(opts.checkpoint) if opts.checkpoint else None)
    return checkpoint, stamp_key(opts, [checkpoint, Path(cuts_path)] + ([Path(opts.ngram)] if opts.ngram else []))


def already_decoded(out: Path) -> str:
    return f"{out} is already decoded with these settings, checkpoint and cuts: nothing to do"


def finished_decode(exp_dir: Path, cuts_path: Path, opts: DecodeOptions, out_root: Path | None = None) -> Path | None:
    """The decode dir when it already holds this exact decode, else None (also where an input is missing:
    the decode itself then says what is wrong)."""
    try:
        _, key = decode_key(exp_dir, cuts_path, opts)
    except (PolyspeechError, OSError):
        return None
    out = decode_dir(exp_dir, opts, out_root)
    return out if is_fresh(out / STAMP, key) else None
