"""Where an LM exp dir keeps its weights, found without loading them or importing torch: a finished
decode's skip check (its stamp names the checkpoint) costs no model."""

from __future__ import annotations

from pathlib import Path

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import checkpoint_step, list_checkpoints, read_model_meta

KIND = "polyspeech_lm"
MODEL = "model.safetensors"
WRITER = "polyspeech train lm"
FIX = "train first with `polyspeech train lm`, or pass another --checkpoint"


def default_model(exp_dir: Path) -> Path | None:
    """What decoding loads by default: `EXP/model.safetensors` unless a checkpoint newer than the
    run that wrote it exists (a run continuing past it), else the newest checkpoint; None when there
    is neither. An early-stopped run's model.safetensors holds its best step, older than the run's
    last checkpoint: it is compared by the steps the run trained, not by the step of its weights."""
    exp_dir = Path(exp_dir)
    ckpts = list_checkpoints(exp_dir)
    model = exp_dir / MODEL
    if model.is_file():
        meta = read_model_meta(model, KIND, "LM model", FIX, WRITER)
        if not ckpts or checkpoint_step(ckpts[-1]) <= int(meta.get("trained_steps", meta.get("step", 0))):
            return model
    return ckpts[-1] if ckpts else None


def checkpoint_path(exp_dir: Path, checkpoint: Path | None = None) -> Path:
    """The checkpoint `decode.lm_io.load_lm` would load (EXP/model.safetensors, else the newest ckpt),
    without loading it; every missing piece is a one-line error."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise PolyspeechError(f"LM exp dir not found: {exp_dir} (train one with `polyspeech train lm --exp-dir {exp_dir}`)")
    for name in ("config.yaml", "vocab.json"):
        if not (exp_dir / name).is_file():
            raise PolyspeechError(f"{exp_dir / name} is missing: {exp_dir} is not a trained LM exp dir (run `polyspeech train lm`)")
    path = Path(checkpoint) if checkpoint else default_model(exp_dir)
    if path is None or not path.is_file():
        raise PolyspeechError(f"no LM checkpoint {'at ' + str(path) if path else 'in ' + str(exp_dir / 'ckpt')} "
                              "(train first, or pass --checkpoint)")
    return path
