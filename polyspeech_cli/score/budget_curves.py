"""Runs of one recipe at different `--budget`s, side by side: every LM's dev curves against training
minutes (one panel per dev metric, one colour per run), and the budget each test target would need,
extrapolated through the runs' test scores.

A run is a recipe exp dir holding `lm_multi/` and `lm_<task>/` (their `train_log.csv`) and the scores
of stage 6 (`lm_multi/scores.json`, `single/scores.json`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_path
from polyspeech_cli.lm.summary import read_log

# (task, dev metric in train_log.csv, panel title); TTS has no dev metric during training: its dev loss
PANELS = (("asr", "asr_cer", "ASR dev CER (attention, greedy)"), ("asr", "asr_ctc_cer", "ASR dev CER (CTC, greedy)"),
          ("tts", None, "TTS dev loss"), ("lid", "lid_acc", "LID dev accuracy"), ("gid", "gid_acc", "GID dev accuracy"))
SYSTEMS = {"single-task": "single/scores.json", "multitask": "lm_multi/scores.json"}
# The targets of the long run (issue 20): ASR CER % per language ("all": single-task, multitask), LID/GID accuracy %
DEFAULT_TARGETS = "all=15,20 de=5 es=5 en=10 fr=10 zh=20 lid=99 gid=99"


@dataclass(frozen=True)
class Run:
    budget: float
    exp_dir: Path

    @property
    def label(self) -> str:
        return f"budget {self.budget:g}"


def parse_runs(specs: list[str]) -> list[Run]:
    """`BUDGET=EXP_DIR` strings, sorted by budget; a malformed one or a missing dir is a one-line error."""
    runs = []
    for spec in specs:
        budget, sep, path = spec.partition("=")
        try:
            value = float(budget)
        except ValueError:
            value = -1.0
        if not sep or value <= 0:
            raise PolyspeechError(f"'{spec}': expected BUDGET=EXP_DIR with a positive budget, e.g. 4=egs/mini/exp")
        if not Path(path).is_dir():
            raise PolyspeechError(f"{path}: no such exp dir (the run's --exp-dir, holding lm_multi/ and lm_<task>/)")
        runs.append(Run(value, Path(path)))
    if len({r.budget for r in runs}) != len(runs):
        raise PolyspeechError("two runs have the same budget: name each budget once")
    return sorted(runs, key=lambda r: r.budget)


def dev_curve(exp_dir: Path, task: str, metric: str | None) -> list[tuple[float, float]]:
    """(training minutes, dev value) of one LM run: `metric`'s rows, or the dev loss where metric is None.

    Dev-loss rows carry no time: they take that of the step's last training row."""
    points, minutes = [], 0.0
    for r in read_log(exp_dir):
        if r["split"] == "train" and r["elapsed_s"]:
            minutes = float(r["elapsed_s"]) / 60
        elif r["split"] == "dev" and r["task"] == task:
            if metric is None and r["loss"]:
                points.append((minutes, float(r["loss"])))
            elif metric is not None and r["metric"] == metric:
                points.append((float(r["elapsed_s"]) / 60 if r["elapsed_s"] else minutes, float(r["value"])))
    return points


def plot_budget_curves(runs: list[Run], png: Path) -> None:
    """One panel per dev metric; per run (colour) the multitask LM (solid) and the task's single-task LM (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.6), squeeze=False)
    for ax, (task, metric, title) in zip(axes[0], PANELS):
        for i, run in enumerate(runs):
            for lm, style, system in (("lm_multi", "o-", "multitask"), (f"lm_{task}", "s--", "single-task")):
                if (run.exp_dir / lm / "train_log.csv").is_file() and (pts := dev_curve(run.exp_dir / lm, task, metric)):
                    ax.plot(*zip(*pts), style, color=f"C{i}", markersize=3, label=f"{run.label}, {system}")
        ax.set(title=title, xlabel="training minutes (that LM's own)")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(Path(png)) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def parse_targets(text: str) -> dict[str, list[float]]:
    """`"all=15,20 de=5 lid=99"` -> {key: [single-task target, multitask target]} (one value: both)."""
    targets = {}
    for item in text.split():
        key, sep, values = item.partition("=")
        try:
            numbers = [float(v) for v in values.split(",")]
        except ValueError:
            numbers = []
        if not sep or not numbers or len(numbers) > 2:
            raise PolyspeechError(f"target '{item}': expected KEY=T or KEY=T_SINGLE,T_MULTI, e.g. {DEFAULT_TARGETS}")
        targets[key] = numbers * (3 - len(numbers))
    return targets


def test_errors(run: Run, system: str) -> dict[str, float]:
    """{language or 'all': ASR CER %, 'lid'/'gid': error %} of one system's test scores."""
    path = run.exp_dir / SYSTEMS[system]
    if not path.is_file():
        raise PolyspeechError(f"{path}: no test scores (run the recipe's stage 6 for {run.exp_dir} first)")
    errors = {}
    for s in json.loads(path.read_text(encoding="utf-8")).values():
        if s.get("task") == "asr":
            errors.update({lang: round(100 * cer, 6) for lang, cer in s["cer"].items()})
        elif s.get("task") in ("lid", "gid"):
            errors[s["task"]] = round(100 * (1 - s["accuracy"]), 6)  # 0.99 -> 1.0, not 1.0000000000000009
    return errors


def needed_budget(b1: float, err1: float, b2: float, err2: float, target: float) -> tuple[float, float | None]:
    """The exponent a of error ∝ budget^-a through two points, and the budget at which it reaches
    `target` (b2 where it is already met; None where the error did not fall)."""
    a = math.log(err1 / err2) / math.log(b2 / b1) if 0 < err2 < err1 else 0.0
    if err2 <= target:
        return a, b2
    return (a, b2 * (err2 / target) ** (1 / a)) if a > 0 else (0.0, None)


def _shown(error: float, accuracy: bool) -> str:
    return f"{100 - error if accuracy else error:.1f}"


def extrapolation_table(runs: list[Run], targets: dict[str, list[float]]) -> str:
    """Markdown: per target and system, the test error at the smallest and largest budget, the exponent
    of error ∝ budget^-a through them, and the budget that line reaches the target at (an estimate)."""
    if len(runs) < 2:
        raise PolyspeechError("an extrapolation needs runs at two budgets")
    lo, hi = runs[0], runs[-1]
    lines = [f"| target | system | {lo.label} | {hi.label} | exponent a | budget to reach it (estimate) |", "|---|---|---|---|---|---|"]
    for i, system in enumerate(SYSTEMS):
        e_lo, e_hi = test_errors(lo, system), test_errors(hi, system)
        for key, values in targets.items():
            if key not in e_lo or key not in e_hi:
                raise PolyspeechError(f"target '{key}': no such score in {lo.exp_dir / SYSTEMS[system]} and {hi.exp_dir / SYSTEMS[system]} "
                                      "(an ASR language, 'all', 'lid' or 'gid')")
            accuracy = key in ("lid", "gid")
            target = 100 - values[i] if accuracy else values[i]
            a, budget = needed_budget(lo.budget, e_lo[key], hi.budget, e_hi[key], target)
            what = f"{key.upper()} accuracy ≥ {values[i]:g}%" if accuracy else f"ASR CER ({key}) ≤ {values[i]:g}%"
            reach = "not falling" if budget is None else ("met" if e_hi[key] <= target else f"{budget:.0f}")
            lines.append(f"| {what} | {system} | {_shown(e_lo[key], accuracy)} | {_shown(e_hi[key], accuracy)} | {a:.2f} | {reach} |")
    return "\n".join(lines) + "\n"


def write_budget_section(runs: list[Run], png: Path, targets: str = DEFAULT_TARGETS) -> str:
    """Draw the curves into `png`; return the markdown section that shows them with the extrapolation."""
    plot_budget_curves(runs, png)
    return (f"## Budgets {' and '.join(f'{r.budget:g}' for r in runs)}: where the curves go\n\n"
            f"Dev metric against each LM's own training minutes, {', '.join(f'{r.label} = `{r.exp_dir}`' for r in runs)} "
            "(multitask solid, single-task dashed):\n\n"
            f"![dev curves per budget]({png.name})\n\n"
            f"The budget each test target would need, estimated by a line error ∝ budget^−a through the test scores of "
            f"{runs[0].label} and {runs[-1].label} (two points, no floor: optimistic wherever the dev curves above flatten):\n\n"
            + extrapolation_table(runs, parse_targets(targets)))
