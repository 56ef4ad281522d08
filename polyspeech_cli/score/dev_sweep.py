"""The table of an egs/real `local/dev_check.sh` sweep (ASR or GID), from each variant's score files
and train_log.csv, so that the sweep's page is assembled by the package like every other results page.

A variant is the LM in `<exp_dir>/lm_<variant>/`; one without scores.json yet gets a `(not run)` row
(a sweep may be tabled before every variant has finished), but a sweep with no finished variant at
all, or a scores.json without the dev decode, is an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError, require_dir
from polyspeech_cli.fileio import atomic_write_text
from polyspeech_cli.lm.summary import read_log, train_rows

NAN = float("nan")
SWEEP_FIX = "run `bash local/dev_check.sh` (without --table-only) for these variants first"


def _gid_head(train_set: str, steps: str) -> list[str]:
    return [f"# egs/real dev sweep: single-task GID ({train_set} train set, {steps} steps)", "",
            "Written by `local/dev_check.sh --task gid` from the score files: librispeech_gender's 25 dev speakers (one utterance "
            "each, unseen in training), the final model. `dev acc during training`: every 100 steps on the same 25.", "",
            "| variant | dev GID acc % | confusion matrix (rows: reference) | train s | dev acc during training |", "|---|---|---|---|---|"]


def _asr_head(train_set: str, steps: str) -> list[str]:
    return [f"# egs/real dev sweep: single-task ASR on speechocean762 ({train_set} train set, {steps} steps)", "",
            "Written by `local/dev_check.sh` from the score files (dev split only: speechocean762's 2 dev speakers, 40 utts; "
            "beam 4, CTC weight 0.8; CER without spaces, as `polyspeech score`). `dev CE min @ step`: the lowest dev "
            "cross-entropy of the run and when (a later rise = memorising the train set); `train s`: the training loop's "
            "seconds (train_log.csv), two runs side by side on the 2-core CPU, 1 thread each (other load on the machine varies).", "",
            "`beam 8 + 6-gram`: the same model decoded with beam 8 and a character 6-gram of its training transcripts fused at "
            "each weight (`--ngram-weights`; dev CER %).", "",
            "| variant | dev CER % | dev WER % | train s | steps | dev CE min @ step | dev CE last | greedy attention / CTC CER at the end "
            "| beam 8 + 6-gram |",
            "|---|---|---|---|---|---|---|---|---|"]


def _gid_row(v: str, s: dict, rows: list[dict], train: list[dict], fused: dict[str, float]) -> str:
    curve = " ".join(f"{float(r['value']):.2f}" for r in rows if r["metric"] == "gid_acc")
    return f"| {v} | {100 * s['accuracy']:.1f} | {s['matrix']} ({'/'.join(s['labels'])}) | {float(train[-1]['elapsed_s']):.0f} | {curve} |"


def _asr_row(v: str, s: dict, rows: list[dict], train: list[dict], fused: dict[str, float]) -> str:
    dev_ce = [(float(r["ce"]), int(r["step"])) for r in rows if r["split"] == "dev" and r["ce"]]
    ev = {r["metric"]: float(r["value"]) for r in rows if r["split"] == "dev" and r["metric"] in ("asr_cer", "asr_ctc_cer")}
    lo = min(dev_ce) if dev_ce else (NAN, 0)
    return (f"| {v} | {100 * s['cer']['all']:.1f} | {100 * s['wer']['all']:.1f} | {float(train[-1]['elapsed_s']):.0f} | "
            f"{train[-1]['step']} | {lo[0]:.3f} @ {lo[1]} | {dev_ce[-1][0] if dev_ce else NAN:.3f} | "
            f"{ev.get('asr_cer', NAN):.3f} / {ev.get('asr_ctc_cer', NAN):.3f} | "
            f"{', '.join(f'{w}: {100 * cer:.1f}' for w, cer in fused.items()) or '–'} |")


# task -> (heading lines, row of a finished variant, the dev decode in its scores.json, its fields, the `(not run)` row's blanks)
SWEEPS: dict[str, tuple[Callable, Callable, str, tuple[str, ...], int]] = {
    "asr": (_asr_head, _asr_row, "decode_asr_so_dev", ("cer", "wer"), 7),
    "gid": (_gid_head, _gid_row, "decode_gid_dev", ("accuracy", "matrix", "labels"), 3),
}


def _dev_scores(d: Path, decode: str, fields: tuple[str, ...]) -> dict:
    """The dev decode's entry of a variant's scores.json, with what the row quotes."""
    path = d / "scores.json"
    try:
        s = json.loads(path.read_text(encoding="utf-8")).get(decode)
    except (json.JSONDecodeError, AttributeError):
        raise PolyspeechError(f"{path}: not a scores.json of `polyspeech score`; re-run `polyspeech score {d / decode}`") from None
    if not isinstance(s, dict) or any(k not in s for k in fields):
        raise PolyspeechError(f"{path}: no {decode} scores (needs {', '.join(fields)}); re-run `polyspeech score {d / decode}`")
    return s


def _fused(d: Path, decode: str) -> dict[str, float]:
    """{n-gram weight: overall CER} of the variant's `<decode>_ngram<W>` decodes (dev_check.sh --ngram-weights)."""
    scores = json.loads((d / "scores.json").read_text(encoding="utf-8"))
    prefix = f"{decode}_ngram"
    return {k.removeprefix(prefix): v["cer"]["all"] for k, v in scores.items() if k.startswith(prefix)}


def dev_table(task: str, exp_dir: Path, train_set: str, steps: str, variants: list[str]) -> str:
    """The sweep's markdown table, one row per variant in the order given."""
    if task not in SWEEPS:
        raise PolyspeechError(f"dev table of task '{task}': one of {', '.join(SWEEPS)}")
    head, row, decode, fields, blanks = SWEEPS[task]
    exp_dir = require_dir(Path(exp_dir), "dev sweep exp dir", SWEEP_FIX)
    if not any((exp_dir / f"lm_{v}" / "scores.json").is_file() for v in variants):
        raise PolyspeechError(f"no variant of the sweep has scores: none of {', '.join(str(exp_dir / f'lm_{v}' / 'scores.json') for v in variants)} "
                              f"exists ({SWEEP_FIX}, or fix the exp dir / variants)")
    lines = head(train_set, steps)
    for v in variants:
        d = exp_dir / f"lm_{v}"
        if not (d / "scores.json").is_file():
            lines.append(f"| {v} | (not run) |" + " |" * blanks)
            continue
        s = _dev_scores(d, decode, fields)
        lines.append(row(v, s, read_log(d), train_rows(d), _fused(d, decode)))
    return "\n".join(lines) + "\n"


def write_dev_table(task: str, exp_dir: Path, train_set: str, steps: str, table: Path, variants: list[str]) -> str:
    """Write the sweep's table to `table` (atomically); returns it."""
    text = dev_table(task, exp_dir, train_set, steps, variants)
    atomic_write_text(Path(table), text)
    return text
