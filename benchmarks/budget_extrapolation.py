"""The budget each ASR CER target would need, extrapolated from two committed egs/mini runs.

Reads the per-language CER of the quality-bar rows and the overall CER of two RESULTS pages made
with different `--budget`s, fits CER = c * budget^-a through the two points per language and
system, and prints the budget at which that line reaches each target. Two points and no floor: the
estimate is optimistic wherever the dev curves flatten (they do in the budget-4 run).

    python3 benchmarks/budget_extrapolation.py egs/mini/RESULTS.md:1 egs/mini/RESULTS_budget4.md:4 \
        --targets "all=15,20 de=5 es=5 en=10 fr=10 zh=20"
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from polyspeech_cli.score.budget_curves import needed_budget

BAR_ROW = re.compile(r"^\| ASR CER ≤ [\d.]+% \((\w+)\) \| [✓✗] ([\d.]+) \| [✓✗] ([\d.]+) \|")
OVERALL_ROW = re.compile(r"^\| ASR CER % \| ([\d.]+) \| ([\d.]+) \|")
SYSTEMS = ("single-task", "multitask")


def read_cers(page: Path) -> dict[str, tuple[float, float]]:
    """{language or 'all': (single-task CER, multitask CER)} from one RESULTS page."""
    cers: dict[str, tuple[float, float]] = {}
    for line in page.read_text(encoding="utf-8").splitlines():
        if m := BAR_ROW.match(line):
            cers[m.group(1)] = (float(m.group(2)), float(m.group(3)))
        elif (m := OVERALL_ROW.match(line)) and "all" not in cers:
            cers["all"] = (float(m.group(1)), float(m.group(2)))
    if "all" not in cers:
        raise SystemExit(f"{page}: no 'ASR CER %' row (a page written by `polyspeech compare`?)")
    return cers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pages", nargs=2, help="PAGE:BUDGET, the smaller budget first")
    ap.add_argument("--targets", required=True, help='"LANG=T ..." (all=T1,T2: one target per system)')
    args = ap.parse_args()
    (p1, b1), (p2, b2) = [(Path(p.rsplit(":", 1)[0]), float(p.rsplit(":", 1)[1])) for p in args.pages]
    c1, c2 = read_cers(p1), read_cers(p2)
    targets = {k: [float(x) for x in v.split(",")] for k, v in (t.split("=") for t in args.targets.split())}
    print(f"| language | system | CER at budget {b1:g} | CER at budget {b2:g} | exponent a | target | budget to reach it (estimate) |")
    print("|---|---|---|---|---|---|---|")
    for lang, ts in targets.items():
        if lang not in c1 or lang not in c2:
            raise SystemExit(f"no CER of '{lang}' in both pages")
        for i, system in enumerate(SYSTEMS):
            target = ts[min(i, len(ts) - 1)]
            a, b = needed_budget(b1, c1[lang][i], b2, c2[lang][i], target)
            reach = "not falling" if b is None else ("met" if b == b2 and c2[lang][i] <= target else f"{b:.0f}")
            print(f"| {lang} | {system} | {c1[lang][i]:.1f} | {c2[lang][i]:.1f} | {a:.2f} | ≤ {target:g}% | {reach} |")


if __name__ == "__main__":
    main()
