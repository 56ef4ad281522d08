"""Checkpoints: everything needed to continue exactly (model, optimiser, scheduler, scaler,
sampler positions, task-choice and torch RNG states), written atomically; keep the last K."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_path
from polyspeech_cli.lm.config import TrainConfig
from polyspeech_cli.lm.model import PolySpeechLM
from polyspeech_cli.lm.vocab import Vocab

_NAME = re.compile(r"^step-(\d+)\.pt$")


def ckpt_dir(exp_dir: Path) -> Path:
    return Path(exp_dir) / "ckpt"


def list_checkpoints(exp_dir: Path) -> list[Path]:
    """Checkpoints of `exp_dir`, oldest first."""
    d = ckpt_dir(exp_dir)
    found = [(int(m.group(1)), p) for p in d.glob("step-*.pt") if (m := _NAME.match(p.name))] if d.is_dir() else []
    return [p for _, p in sorted(found)]


def save_checkpoint(exp_dir: Path, step: int, state: dict, keep_last: int) -> Path:
    """Write `ckpt/step-N.pt` atomically, then delete all but the newest `keep_last`."""
    path = ckpt_dir(exp_dir) / f"step-{step:07d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in list_checkpoints(exp_dir)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, vocab_fingerprint: str) -> dict:
    """Load a checkpoint; a different vocabulary is an error (nothing is touched)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("vocab_fingerprint") != vocab_fingerprint:
        raise PolyspeechError(
            f"{path} was trained with a different vocabulary (fingerprint {state.get('vocab_fingerprint')} != {vocab_fingerprint} "
            f"of vocab.json): use a new --exp-dir, or resume with the same train cuts and vocab settings"
        )
    return state


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """Average the model weights of `paths` (float tensors; others taken from the last)."""
    if not paths:
        raise PolyspeechError(f"no checkpoints to average in {out.parent} (train first)")
    avg: dict[str, torch.Tensor] = {}
    for p in paths:
        model = torch.load(p, map_location="cpu", weights_only=False)["model"]
        for k, v in model.items():
            if v.is_floating_point():
                avg[k] = avg.get(k, torch.zeros_like(v, dtype=torch.float64)) + v.double() / len(paths)
            else:
                avg[k] = v
    last = torch.load(paths[-1], map_location="cpu", weights_only=False)
    last["model"] = {k: v.to(last["model"][k].dtype) for k, v in avg.items()}
    last["averaged"] = [p.name for p in paths]
    for key in ("optimizer", "scheduler", "scaler"):
        last.pop(key, None)
    with atomic_path(out) as tmp:
        torch.save(last, tmp)
    return out


def build_model(cfg: TrainConfig, vocab: Vocab, feat_dim: int) -> PolySpeechLM:
    return PolySpeechLM(cfg.model, vocab.size, feat_dim, len(vocab.text_units), vocab.text_offset)


def load_model(exp_dir: Path, checkpoint: Path | None = None) -> tuple[PolySpeechLM, Vocab, TrainConfig]:
    """Model (eval mode, CPU), vocabulary and config of an experiment; newest checkpoint by default."""
    from polyspeech_cli.config import load_config

    exp_dir = Path(exp_dir)
    cfg = load_config(exp_dir / "config.yaml", TrainConfig)
    vocab = Vocab.load(exp_dir / "vocab.json")
    ckpts = list_checkpoints(exp_dir)
    path = Path(checkpoint) if checkpoint else (ckpts[-1] if ckpts else None)
    if path is None:
        raise PolyspeechError(f"no checkpoint in {exp_dir / 'ckpt'} (train first, or pass --checkpoint)")
    state = load_checkpoint(path, vocab.fingerprint)
    model = build_model(cfg, vocab, state["feat_dim"])
    state["model"].setdefault("rates", model.rates)  # checkpoints from before aligned positions
    state["model"].setdefault("feat_stats", model.feat_stats)  # ... and from before global CMVN
    model.load_state_dict(state["model"])
    return model.eval(), vocab, cfg
