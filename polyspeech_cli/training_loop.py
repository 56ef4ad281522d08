"""The one training skeleton of every trainer (LM, codec, speech decoder and its HiFi-GAN).

It owns what the trainers share: threads, device and precision (`setup_device`); the resume/skip
decision (`resume_decision`, the stamp rule of `training.check_resume`); the run stamp at the start
and the finished stamp at the end (`start_run`, `finish_run`); the step loop with its progress bar,
dev evaluation every `Dev.every` steps, early stopping (`EarlyStopping`) and checkpoints every
`Loop.checkpoint_every` steps (`run_loop`); the dev evaluation and checkpoint of the last step
(`finish_loop`); checkpoint files with their `kind`, keep-last and averaging (`save_state`,
`average_last`). All messages go through the one `log` function the trainer passes.

Each model supplies a `Loop`: its step function (one optimiser step: batch stream + loss), what it
logs after a step, its dev metric(s) (`Dev`), how it writes its checkpoint state, and optionally
the error that early stopping watches. Bottom layer: imports nothing from the model packages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polyspeech_cli.config import save_config
from polyspeech_cli.fileio import list_checkpoints
from polyspeech_cli.training import (
    BUDGET_KEYS,
    autocast_dtype,
    average_checkpoints,
    check_resume,
    mark_run,
    pick_device,
    resolve_precision,
    save_checkpoint,
)

Log = Callable[..., None]


def quiet(*args: Any, **kwargs: Any) -> None:
    """A `log` that says nothing."""


# ---- before the loop ------------------------------------------------------------------------------
def setup_device(device: str, precision: str, threads: int) -> tuple[torch.device, str, torch.dtype | None]:
    """Set torch's CPU threads (when `threads` > 0); return the device, the concrete precision
    (fp32, bf16, fp16: `training.resolve_precision`) and its autocast dtype (None = fp32)."""
    if threads > 0:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    precision = resolve_precision(precision, dev)
    return dev, precision, autocast_dtype(precision, dev)


def resume_decision(exp_dir: Path, key: dict[str, Any], resume: bool, log: Log, budget_keys: tuple[str, ...] = BUDGET_KEYS,
                    checkpoints: list[Path] | None = None) -> tuple[str, list[Path]]:
    """("fresh" | "continue" | "skip", the exp dir's checkpoints, oldest first): the one rule of
    `training.check_resume`. Says so when --resume finds nothing to continue."""
    ckpts = list_checkpoints(Path(exp_dir)) if checkpoints is None else checkpoints
    decision = check_resume(Path(exp_dir), key, resume, ckpts[-1] if ckpts else None, budget_keys)
    if resume and decision == "fresh":
        log(f"--resume: no checkpoint in {Path(exp_dir) / 'ckpt'}, starting from scratch")
    return decision, ckpts


def start_run(exp_dir: Path, config: Any, key: dict[str, Any]) -> None:
    """Create the exp dir, write its config.yaml and record the (unfinished) run in run.json."""
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, exp_dir / "config.yaml")
    mark_run(exp_dir, key, finished=False)


def finish_run(exp_dir: Path, key: dict[str, Any], finished: bool, model: Path, **extra: Any) -> None:
    """Record the run's end in run.json: `finished` (a re-run with --resume skips it) and its model file."""
    mark_run(Path(exp_dir), key, finished=finished, outputs=[model], **extra)


# ---- checkpoints --------------------------------------------------------------------------------
def save_state(exp_dir: Path, step: int, kind: str, state: dict[str, Any], keep_last: int) -> Path:
    """`EXP/ckpt/step-N.safetensors` holding `state` tagged with the model's `kind`; keeps the newest `keep_last`."""
    return save_checkpoint(exp_dir, step, {"kind": kind, **state}, keep_last)


def average_last(exp_dir: Path, n: int, read: Callable[[Path], dict]) -> Path | None:
    """`EXP/ckpt/avg-N.safetensors`: the mean weights of the last `n` checkpoints (none when n <= 1)."""
    if n <= 1:
        return None
    return average_checkpoints(list_checkpoints(exp_dir)[-n:], Path(exp_dir) / "ckpt" / f"avg-{n}.safetensors", read)


# ---- the loop -----------------------------------------------------------------------------------
class EarlyStopping:
    """The best dev error so far, its step and weights (`weights()`), and the evaluations since it.
    `state` is what a checkpoint saves and a resumed run restores (`state.update(saved)`)."""

    def __init__(self, patience: int, error: Callable[[dict[str, Any]], float | None], weights: Callable[[], dict]) -> None:
        self.patience, self.error, self.weights = patience, error, weights
        self.state: dict[str, Any] = {"error": float("inf"), "step": 0, "bad": 0, "model": None}

    @property
    def stopped(self) -> bool:
        """True when `patience` evaluations in a row brought no better error."""
        return self.state["bad"] >= self.patience > 0

    def update(self, step: int, metrics: dict[str, Any]) -> bool:
        """Record the dev `metrics` of `step` (those without the watched error are ignored); True = stop now."""
        err = self.error(metrics) if self.patience else None
        if err is None:
            return False
        if err < self.state["error"]:
            self.state.update(error=err, step=step, bad=0, model=self.weights())
        else:
            self.state["bad"] += 1
        return self.state["bad"] >= self.patience


@dataclass
class Dev:
    """A dev evaluation every `every` steps (0 = never in the loop); `run(step)` returns its metrics.
    `at_max`: also at step == max_steps inside the loop (before early stopping and the checkpoint)."""

    every: int
    run: Callable[[int], dict[str, Any]]
    at_max: bool = False


@dataclass
class Loop:
    """What a model supplies to `run_loop`."""

    name: str  # the progress bar's label
    max_steps: int  # the run's budget (what the bar counts to; no checkpoint in the loop at it)
    train_step: Callable[[int], Any]  # one optimiser step from `step` (0-based); returns what `after_step` gets
    after_step: Callable[[int, Any], str]  # after step `step` (1-based): log it; returns the bar's description
    checkpoint: Callable[[int], None]  # write the full training state at `step`
    checkpoint_every: int = 0
    dev: Sequence[Dev] = ()
    stopper: EarlyStopping | None = None


@dataclass
class LoopEnd:
    """Where `run_loop` ended: the step, the step it began at, whether early stopping ended it, the
    last dev metrics and the steps of the last dev evaluation and checkpoint (None: none)."""

    step: int
    start: int
    stopped: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    dev_step: int | None = None
    checkpoint_step: int | None = None


def _dev(loop: Loop, step: int, end: LoopEnd, in_loop: bool) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    ran = False
    for d in loop.dev:
        if not in_loop or (d.every and step % d.every == 0 and (step < loop.max_steps or d.at_max)):
            metrics.update(d.run(step))
            ran = True
    if ran:
        end.metrics, end.dev_step = metrics, step
    return metrics


def run_loop(loop: Loop, step: int, end_step: int, log: Log, progress: bool) -> LoopEnd:
    """Train from `step` up to `end_step` (<= max_steps; earlier = an interrupted run), or until
    early stopping ends it. After each step: `after_step`, the dev evaluations that are due, early
    stopping, and a checkpoint every `checkpoint_every` steps before max_steps."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    end = LoopEnd(step=step, start=step)
    bar = Progress(TextColumn(f"[bold]{loop.name}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.description}"), disable=not progress)
    with bar:
        job = bar.add_task("", total=loop.max_steps, completed=step)
        while step < end_step and not (loop.stopper is not None and loop.stopper.stopped):
            out = loop.train_step(step)
            step += 1
            end.step = step
            bar.update(job, completed=step, description=loop.after_step(step, out))
            metrics = _dev(loop, step, end, in_loop=True)
            if loop.stopper is not None and loop.stopper.update(step, metrics):
                best = loop.stopper.state
                log(f"early stop at step {step}: no better dev error in {loop.stopper.patience} evaluations; "
                    f"best {best['error']:.4f} at step {best['step']}")
                end.stopped = True
                break
            if loop.checkpoint_every and step % loop.checkpoint_every == 0 and step < loop.max_steps:
                loop.checkpoint(step)
                end.checkpoint_step = step
    return end


def finish_loop(loop: Loop, end: LoopEnd, always: bool = False) -> dict[str, Any]:
    """After `run_loop`: the dev evaluation and the checkpoint of the last step, each unless the loop
    already made it there; nothing when the loop took no step (unless `always`). Returns the last
    dev metrics."""
    if end.step > end.start or always:
        if end.dev_step != end.step:
            _dev(loop, end.step, end, in_loop=False)
        if end.checkpoint_step != end.step:
            loop.checkpoint(end.step)
            end.checkpoint_step = end.step
    return end.metrics
