"""What each LM run cost and how it learned, from its `train_log.csv`: a budget table and one
figure comparing the runs task by task (x = optimiser steps spent on that task)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_path

DEV_METRICS = {"asr": "asr_cer", "lid": "lid_acc", "gid": "gid_acc"}  # tts: no metric during training, its dev loss
SECOND_METRIC = {"asr": "asr_ctc_cer"}  # drawn dashed in the same panel


def read_log(exp_dir: Path) -> list[dict]:
    """The rows of `<exp_dir>/train_log.csv`; a missing log is a one-line error."""
    path = Path(exp_dir) / "train_log.csv"
    if not path.is_file():
        raise PolyspeechError(f"{path}: no training log (train the LM with `polyspeech train lm --exp-dir {exp_dir}` first)")
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def train_rows(exp_dir: Path) -> list[dict]:
    """The training rows of `<exp_dir>/train_log.csv`; a log without any yet is a one-line error."""
    train = [r for r in read_log(exp_dir) if r["split"] == "train"]
    if not train:
        raise PolyspeechError(f"{Path(exp_dir) / 'train_log.csv'}: no training rows yet (train longer than log_every steps)")
    return train


def _x(row: dict) -> int:
    return int(row.get("task_steps") or row["step"])


def budget_table(exp_dirs: list[Path]) -> str:
    """Markdown: per run, its tasks, optimiser steps (per task), the kept model's step (early
    stopping, else the last), hours of speech seen and wall time."""
    lines = ["| model | tasks | steps | steps per task | kept model (step) | speech seen (h) | training time (s) | share of LM time |",
             "|---|---|---|---|---|---|---|---|"]
    seconds = {d: float(next(r for r in reversed(read_log(d)) if r["split"] == "train")["elapsed_s"] or 0) for d in exp_dirs}
    total = sum(seconds.values()) or 1.0
    for d in exp_dirs:
        rows = read_log(d)
        train = train_rows(d)
        kept = [r["value"] for r in rows if r["metric"] == "best_step"]
        last = {r["task"]: r for r in train}
        end = train[-1]
        per_task = ", ".join(f"{t} {_x(r)}" for t, r in sorted(last.items()))
        kept_step = f"{float(kept[-1]):.0f} (best on dev)" if kept else end["step"]
        lines.append(f"| {Path(d).name} | {','.join(sorted(last))} | {end['step']} | {per_task} | {kept_step} | {float(end['hours_seen']):.2f} | "
                     f"{float(end['elapsed_s']):.0f} | {100 * seconds[d] / total:.0f}% |")
    return "\n".join(lines) + "\n"


def plot_curves(exp_dirs: list[Path], png: Path) -> None:
    """Per task: train loss (top) and the dev metric, or the dev loss for TTS (bottom), of every
    run that trains it, against the steps spent on that task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train: dict[str, dict[str, list]] = defaultdict(dict)
    dev: dict[str, dict[str, list]] = defaultdict(dict)
    dev2: dict[str, dict[str, list]] = defaultdict(dict)
    for d in exp_dirs:
        name = Path(d).name
        for r in read_log(d):
            t = r["task"]
            if r["split"] == "train" and r["loss"]:
                train[t].setdefault(name, []).append((_x(r), float(r["loss"])))
            elif r["split"] == "dev" and (r["metric"] == DEV_METRICS.get(t) or (t == "tts" and r["loss"])):
                dev[t].setdefault(name, []).append((_x(r), float(r["value"] or r["loss"])))
            elif r["split"] == "dev" and r["metric"] and r["metric"] == SECOND_METRIC.get(t):
                dev2[t].setdefault(name, []).append((_x(r), float(r["value"])))
    tasks = [t for t in ("asr", "tts", "lid", "gid") if t in train]
    colors = {Path(d).name: f"C{i}" for i, d in enumerate(exp_dirs)}  # one colour per run in every panel
    fig, axes = plt.subplots(2, len(tasks), figsize=(4 * len(tasks), 6.5), squeeze=False)
    for j, t in enumerate(tasks):
        for name, pts in sorted(train[t].items()):
            axes[0, j].plot(*zip(*pts), color=colors[name], label=name)
        for name, pts in sorted(dev[t].items()):
            axes[1, j].plot(*zip(*pts), "o-", color=colors[name], label=name)
        for name, pts in sorted(dev2[t].items()):
            axes[1, j].plot(*zip(*pts), "s--", color=colors[name], label=f"{name} ({SECOND_METRIC[t]})")
        axes[0, j].set(title=f"{t}: train loss", yscale="log")
        axes[1, j].set(title=f"{t}: dev {DEV_METRICS.get(t, 'loss')}", xlabel=f"steps on {t}")
        axes[1, j].legend(fontsize=7)
        axes[0, j].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(Path(png)) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def dev_error(task: str, metrics: dict[str, float], dev_losses: dict[str, float]) -> float | None:
    """The early-stopping criterion of `task` (lower is better), or None when this evaluation has none."""
    if task == "tts":
        return dev_losses.get("tts")
    if task == "asr":
        cers = [metrics[k] for k in ("asr_cer", "asr_ctc_cer") if k in metrics]
        return min(cers) if cers else None
    return 1.0 - metrics[f"{task}_acc"] if f"{task}_acc" in metrics else None


def final_dev_error(exp_dir: Path, task: str) -> float:
    """The dev error (`dev_error`) of the model a run kept, from its last evaluation."""
    rows = [r for r in read_log(exp_dir) if r["split"] == "dev" and r["task"] == task]
    last_step = max((int(r["step"]) for r in rows if r["metric"]), default=None)
    metrics = {r["metric"]: float(r["value"]) for r in rows if r["metric"] and int(r["step"]) == last_step}
    losses = {task: float(r["loss"]) for r in rows if r["loss"]}  # the last dev loss (TTS)
    err = dev_error(task, metrics, losses)
    if err is None:
        raise PolyspeechError(f"{Path(exp_dir) / 'train_log.csv'}: no dev evaluation of task '{task}' (train with --dev-cuts)")
    return err


def best_run(exp_dirs: list[Path], task: str) -> Path:
    """The run whose kept model has the lowest dev error on `task` (ties: the first named)."""
    return min(exp_dirs, key=lambda d: final_dev_error(d, task))

