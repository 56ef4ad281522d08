"""Dev metrics of LM runs at equal training minutes: the README table "LM: what buys accuracy per minute".

    python3 benchmarks/lm_minutes.py --minutes 4 --baseline base exp_sweep/asr_auto_s0/* > table.md
    python3 benchmarks/lm_minutes.py --spread lid_acc exp_sweep/lid_*_s*/base > seeds.md

Reads each run's `train_log.csv` (written by `polyspeech train lm`): the dev evaluations (greedy
attention CER, CTC CER, LID/GID accuracy) with the wall-clock seconds at which they were made, and
the training rows' steps. A metric at M minutes is interpolated linearly between the two dev
evaluations around M*60 s (the clock includes the evaluations, the same for every run); a run that
ended before M minutes reports its last evaluation, marked `*`. The step time is the run's training
seconds per step (median over its logged intervals), measured in that run.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

METRICS = (("asr_ctc_cer", "dev CTC CER"), ("asr_cer", "dev attention CER"), ("lid_acc", "dev LID acc"), ("gid_acc", "dev GID acc"))


def read_log(exp: Path) -> tuple[dict[str, dict[int, tuple[float, float]]], list[tuple[int, float]]]:
    """{metric: {step: (elapsed_s, value)}} of the dev evaluations and [(step, elapsed_s)] of the training rows."""
    evals: dict[str, dict[int, tuple[float, float]]] = {}
    train: list[tuple[int, float]] = []
    with open(exp / "train_log.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["split"] == "dev" and row["metric"] and row["elapsed_s"]:
                evals.setdefault(row["metric"], {})[int(row["step"])] = (float(row["elapsed_s"]), float(row["value"]))
            elif row["split"] == "train" and row["elapsed_s"]:
                train.append((int(row["step"]), float(row["elapsed_s"])))
    return evals, sorted(set(train))


def at_seconds(points: list[tuple[float, float]], seconds: float) -> tuple[float, bool]:
    """The value at `seconds`, interpolated; (last value, True) when the run ended before it."""
    points = sorted(points)
    if seconds >= points[-1][0]:
        return points[-1][1], seconds > points[-1][0] * 1.02
    if seconds <= points[0][0]:
        return points[0][1], False
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        if t0 <= seconds <= t1:
            return v0 + (v1 - v0) * (seconds - t0) / (t1 - t0), False
    raise AssertionError("unreachable")


def step_time(train: list[tuple[int, float]]) -> float:
    """Median seconds per step over the logged intervals (an interval with an evaluation in it is slower: the median skips it)."""
    rates = [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(train, train[1:]) if s1 > s0]
    return statistics.median(rates) if rates else float("nan")


def changes(exp: Path) -> str:
    """The run's config overrides (written by minutes_sweep.sh), or that it ran the default."""
    path = exp / "overrides.txt"
    return (path.read_text(encoding="utf-8").strip() if path.is_file() else "") or "(the default of the time)"


def table(exps: list[Path], minutes: float, baseline: str | None) -> str:
    rows, present = [], set()
    for exp in exps:
        evals, train = read_log(exp)
        present |= set(evals)
        rows.append((exp, evals, train))
    metrics = [(k, name) for k, name in METRICS if k in present]
    head = ["variant", "changes", *[f"{name} at {minutes:g} min" for _, name in metrics], "s / step", f"steps in {minutes:g} min"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for exp, evals, train in rows:
        cells = [f"**{exp.name}**" if exp.name == baseline else exp.name, changes(exp)]
        for k, _ in metrics:
            if k not in evals:
                cells.append("–")
                continue
            v, ended = at_seconds(list(evals[k].values()), minutes * 60)
            cells.append(f"{v:.3f}{'*' if ended else ''}")
        st = step_time(train)
        steps = max((s for s, t in train if t <= minutes * 60), default=0)
        cells += [f"{st:.3f}", str(steps)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def spread(exps: list[Path], metric: str) -> str:
    runs = []
    for exp in exps:
        evals, _ = read_log(exp)
        if metric in evals:
            runs.append((exp, {step: v for step, (_, v) in evals[metric].items()}))
    if not runs:
        raise SystemExit(f"error: no run has dev evaluations of {metric}")
    steps = sorted({s for _, by_step in runs for s in by_step})
    out = ["| run | changes | precision | seed | " + " | ".join(f"step {s}" for s in steps) + " |", "|" + "---|" * (4 + len(steps))]
    finals = []
    for exp, by_step in runs:
        _, precision, seed = exp.parent.name.rsplit("_", 2)
        out.append(f"| {exp.name} | {changes(exp)} | {precision} | {seed.lstrip('s')} | " + " | ".join(f"{by_step[s]:.3f}" if s in by_step else "–" for s in steps) + " |")
        finals.append(by_step[max(by_step)])
    out.append(f"\n{metric} at the last evaluation over {len(finals)} runs: mean {statistics.mean(finals):.3f}, "
               f"spread (max - min) {max(finals) - min(finals):.3f}, lowest {min(finals):.3f}\n")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exps", nargs="+", type=Path, help="exp dirs of `polyspeech train lm` runs")
    ap.add_argument("--minutes", type=float, help="the training minutes to compare at")
    ap.add_argument("--baseline", default="base", help="the run shown in bold (today's default)")
    ap.add_argument("--spread", metavar="METRIC", help="instead: METRIC of every run at each evaluation, mean and spread")
    args = ap.parse_args()
    exps = [e for e in args.exps if (e / "train_log.csv").is_file()]
    if not exps:
        raise SystemExit("error: none of the exp dirs has a train_log.csv (train them first)")
    if args.spread:
        print(spread(exps, args.spread), end="")
    elif args.minutes is None:
        raise SystemExit("error: give --minutes M (or --spread METRIC)")
    else:
        print(table(exps, args.minutes, args.baseline), end="")


if __name__ == "__main__":
    main()
