"""LM experiment files, the same layout as every trainer's: `EXP/ckpt/step-N.safetensors`
(everything needed to continue exactly: model, optimiser, scheduler, scaler, sampler positions,
task-choice and torch RNG states; tensors in the file, every other value as JSON in its header:
loading it never runs code; the last K kept) and `EXP/model.safetensors` (the final weights +
step, vocabulary fingerprint and feature dim in its JSON header). Written atomically."""

from __future__ import annotations

from pathlib import Path

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli import training
from polyspeech_cli.fileio import is_state_file, legacy_checkpoint_error, load_model_file, load_state_file, save_model_file
from polyspeech_cli.lm.config import TrainConfig
from polyspeech_cli.lm.files import FIX, KIND, MODEL, WRITER, default_model
from polyspeech_cli.lm.model import PolySpeechLM
from polyspeech_cli.lm.vocab import Vocab


def rng_state(rng) -> list:
    """A `random.Random` state as plain lists (what a checkpoint's JSON header holds)."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng, state) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


def read_checkpoint(path: Path) -> dict:
    """A training checkpoint (no vocabulary check)."""
    return load_state_file(path, None, "LM checkpoint", FIX, WRITER)


def load_checkpoint(path: Path, vocab_fingerprint: str) -> dict:
    """Load a checkpoint; a different vocabulary is an error (nothing is touched)."""
    state = read_checkpoint(path)
    if state.get("vocab_fingerprint") != vocab_fingerprint:
        raise PolyspeechError(
            f"{path} was trained with a different vocabulary (fingerprint {state.get('vocab_fingerprint')} != {vocab_fingerprint} "
            f"of vocab.json): use a new --exp-dir, or resume with the same train cuts and vocab settings"
        )
    return state


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """Average the model weights of `paths` (float tensors; others taken from the last): `training.average_checkpoints`."""
    return training.average_checkpoints(paths, out, read_checkpoint)


def save_model(exp_dir: Path, model: PolySpeechLM, step: int, vocab_fingerprint: str, feat_dim: int,
               trained_steps: int | None = None) -> Path:
    """Write the final model `EXP/model.safetensors` (the config is EXP/config.yaml, the vocabulary
    EXP/vocab.json): the weights of training step `step` (early stopping: the best dev step) at the
    end of a run of `trained_steps` steps (default `step`), whose checkpoints it supersedes."""
    path = Path(exp_dir) / MODEL
    meta = {"kind": KIND, "step": step, "trained_steps": step if trained_steps is None else trained_steps,
            "vocab_fingerprint": vocab_fingerprint, "feat_dim": feat_dim}
    save_model_file(path, model.state_dict(), meta)
    return path


def build_model(cfg: TrainConfig, vocab: Vocab, feat_dim: int) -> PolySpeechLM:
    return PolySpeechLM(cfg.model, vocab.size, feat_dim, len(vocab.text_units), vocab.text_offset)


def load_model(exp_dir: Path, checkpoint: Path | None = None) -> tuple[PolySpeechLM, Vocab, TrainConfig]:
    """Model (eval mode, CPU), vocabulary and config of an experiment; `checkpoint` is a
    training checkpoint (`ckpt/step-N.safetensors`, `ckpt/avg-K.safetensors`) or a model file
    (`model.safetensors`); by default `default_model(exp_dir)`."""
    from polyspeech_cli.config import load_config

    exp_dir = Path(exp_dir)
    cfg = load_config(exp_dir / "config.yaml", TrainConfig)
    vocab = Vocab.load(exp_dir / "vocab.json")
    path = Path(checkpoint) if checkpoint else default_model(exp_dir)
    if path is None:
        raise PolyspeechError(f"no model in {exp_dir} ({MODEL} or ckpt/step-N.safetensors; train first, or pass --checkpoint)")
    if path.suffix == ".pt":
        raise legacy_checkpoint_error(path)
    if is_state_file(path):
        state = load_checkpoint(path, vocab.fingerprint)
    else:  # a model file (load_model_file names anything else)
        weights, meta = load_model_file(path, KIND, "LM model", FIX, WRITER)
        if meta.get("vocab_fingerprint") != vocab.fingerprint:
            raise PolyspeechError(f"{path} was trained with a different vocabulary than {exp_dir / 'vocab.json'} "
                                  f"(fingerprint {meta.get('vocab_fingerprint')} != {vocab.fingerprint}): retrain, or restore vocab.json")
        state = {"model": weights, "feat_dim": meta["feat_dim"]}
    model = build_model(cfg, vocab, state["feat_dim"])
    model.load_state_dict(state["model"])
    return model.eval(), vocab, cfg
