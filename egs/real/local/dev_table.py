#!/usr/bin/env python3
"""The dev table of a `local/dev_check.sh` sweep, from each variant's score files and train_log.csv:

    python3 local/dev_table.py asr|gid EXP_DIR TRAIN_SET STEPS TABLE VARIANT...
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def gid_table(exp: str, train_set: str, steps: str, table: str, variants: list[str]) -> None:
    lines = [f"# egs/real dev sweep: single-task GID ({train_set} train set, {steps} steps)", "",
             "Written by `local/dev_check.sh --task gid` from the score files: librispeech_gender's 25 dev speakers (one utterance "
             "each, unseen in training), the final model. `dev acc during training`: every 100 steps on the same 25.", "",
             "| variant | dev GID acc % | confusion matrix (rows: reference) | train s | dev acc during training |", "|---|---|---|---|---|"]
    for v in variants:
        d = Path(exp) / f"lm_{v}"
        if not (d / "scores.json").is_file():
            lines.append(f"| {v} | (not run) | | | |")
            continue
        s = json.loads((d / "scores.json").read_text())["decode_gid_dev"]
        rows = list(csv.DictReader(open(d / "train_log.csv")))
        train = [r for r in rows if r["split"] == "train"]
        curve = " ".join(f"{float(r['value']):.2f}" for r in rows if r["metric"] == "gid_acc")
        lines.append(f"| {v} | {100 * s['accuracy']:.1f} | {s['matrix']} ({'/'.join(s['labels'])}) | {float(train[-1]['elapsed_s']):.0f} | {curve} |")
    Path(table).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def asr_table(exp: str, train_set: str, steps: str, table: str, variants: list[str]) -> None:
    lines = [f"# egs/real dev sweep: single-task ASR on speechocean762 ({train_set} train set, {steps} steps)", "",
             "Written by `local/dev_check.sh` from the score files (dev split only: speechocean762's 2 dev speakers, 40 utts; "
             "beam 4, CTC weight 0.8; CER without spaces, as `polyspeech score`). `dev CE min @ step`: the lowest dev "
             "cross-entropy of the run and when (a later rise = memorising the train set); `train s`: the training loop's "
             "seconds (train_log.csv), two runs side by side on the 2-core CPU, 1 thread each (other load on the machine varies).", "",
             "| variant | dev CER % | dev WER % | train s | steps | dev CE min @ step | dev CE last | greedy attention / CTC CER at the end |",
             "|---|---|---|---|---|---|---|---|"]
    for v in variants:
        d = Path(exp) / f"lm_{v}"
        if not (d / "scores.json").is_file():
            lines.append(f"| {v} | (not run) | | | | | | |")
            continue
        s = json.loads((d / "scores.json").read_text())["decode_asr_so_dev"]
        rows = list(csv.DictReader(open(d / "train_log.csv")))
        train = [r for r in rows if r["split"] == "train"]
        dev_ce = [(float(r["ce"]), int(r["step"])) for r in rows if r["split"] == "dev" and r["ce"]]
        ev = {r["metric"]: float(r["value"]) for r in rows if r["split"] == "dev" and r["metric"] in ("asr_cer", "asr_ctc_cer")}
        lo = min(dev_ce) if dev_ce else (float("nan"), 0)
        lines.append(f"| {v} | {100 * s['cer']['all']:.1f} | {100 * s['wer']['all']:.1f} | {float(train[-1]['elapsed_s']):.0f} | "
                     f"{train[-1]['step']} | {lo[0]:.3f} @ {lo[1]} | {dev_ce[-1][0] if dev_ce else float('nan'):.3f} | "
                     f"{ev.get('asr_cer', float('nan')):.3f} / {ev.get('asr_ctc_cer', float('nan')):.3f} |")
    Path(table).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    task, exp, train_set, steps, table, *variants = sys.argv[1:]
    {"asr": asr_table, "gid": gid_table}[task](exp, train_set, steps, table, variants)
