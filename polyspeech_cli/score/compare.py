"""The paper's table: single-task vs multitask on every metric, from each system's scores.json.

Rows: ASR CER, TTS SECS (with the SECS between different real speakers for reference), TTS CER
(our ASR on the synthesized audio: an ASR decode dir named `decode_asr_tts*`), LID and GID accuracy.
Below it: the quality bars of the recipe checked against the numbers, and (from the LM exp dirs)
each model's training budget and a figure of the training curves.
"""

from __future__ import annotations

import json
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError

ROWS = ("ASR CER %", "TTS SECS", "TTS SECS, different real speakers", "TTS CER %", "LID accuracy %", "GID accuracy %")
LOWER_IS_BETTER = ("ASR CER %", "TTS CER %")
# The recipe's targets (egs/mini, generated corpus); `None` = compared with another number.
ASR_CER_BAR, TTS_CER_BAR, LID_BAR, GID_BAR, RELATIVE_BAR = 15.0, 30.0, 98.0, 99.0, 0.10


def metrics(scores: dict[str, dict]) -> dict[str, float]:
    """The table's numbers from one system's scores.json (missing ones are left out); per-language
    ASR CERs under `ASR CER % (<lang>)`."""
    out: dict[str, float] = {}
    for name, s in scores.items():
        if s["task"] == "asr":
            row = "TTS CER %" if name.startswith("decode_asr_tts") else "ASR CER %"
            out[row] = 100 * s["cer"]["all"]
            if row == "ASR CER %":
                out |= {f"ASR CER % ({lang})": 100 * v for lang, v in s["cer"].items() if lang != "all"}
        elif s["task"] == "tts":
            out["TTS SECS"], out["TTS SECS, different real speakers"] = s["secs"], s["secs_between_speakers"]
        else:
            out[f"{s['task'].upper()} accuracy %"] = 100 * s["accuracy"]
    return out


def _cell(row: str, c: dict[str, float]) -> str:
    if row not in c:
        return "–"
    return f"{c[row]:.3f}" if "SECS" in row else f"{c[row]:.1f}"


def load_systems(systems: dict[str, Path]) -> dict[str, dict]:
    """{label: scores.json contents}; a missing file is a one-line error."""
    out = {}
    for label, path in systems.items():
        if not Path(path).is_file():
            raise PolyspeechError(f"{path}: scores not found (run `polyspeech score` for the {label} system first)")
        out[label] = json.loads(Path(path).read_text(encoding="utf-8"))
    return out


def compare_table(columns: dict[str, dict[str, float]], only_present: bool = False) -> str:
    """Markdown table with one column of `metrics` per system (e.g. single-task, multitask);
    `only_present`: just the rows some column has."""
    lines = ["| metric | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    rows = [r for r in ROWS if not only_present or any(r in c for c in columns.values())]
    lines += [f"| {row} | " + " | ".join(_cell(row, c) for c in columns.values()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _mark(ok: bool | None, text: str) -> str:
    return text if ok is None else f"{'✓' if ok else '✗'} {text}"


def quality_bars(columns: dict[str, dict[str, float]]) -> str:
    """The recipe's quality bars, each checked per system (✓/✗ and the measured number); the
    systems after the first are also checked to be within 10% relative of the first."""
    langs = sorted({k[len("ASR CER % (") : -1] for c in columns.values() for k in c if k.startswith("ASR CER % (")})
    checks: list[tuple[str, callable]] = [(f"ASR CER ≤ {ASR_CER_BAR:g}% ({lang})", lambda c, r=f"ASR CER % ({lang})": (r, c[r] <= ASR_CER_BAR))
                                          for lang in langs]
    checks += [
        (f"LID accuracy ≥ {LID_BAR:g}%", lambda c: ("LID accuracy %", c["LID accuracy %"] >= LID_BAR)),
        (f"GID accuracy ≥ {GID_BAR:g}%", lambda c: ("GID accuracy %", c["GID accuracy %"] >= GID_BAR)),
        (f"TTS CER ≤ {TTS_CER_BAR:g}%", lambda c: ("TTS CER %", c["TTS CER %"] <= TTS_CER_BAR)),
    ]
    secs = "TTS SECS above SECS of different real speakers"
    labels = list(columns)
    lines = ["| bar | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for name, check in checks:
        cells = []
        for c in columns.values():
            try:
                row, ok = check(c)
                cells.append(_mark(ok, _cell(row, c)))
            except KeyError:
                cells.append("–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    diff = "TTS SECS, different real speakers"
    cells = [_mark(c["TTS SECS"] > c[diff], f"{c['TTS SECS']:.3f} vs {c[diff]:.3f}") if "TTS SECS" in c else "–" for c in columns.values()]
    lines.append(f"| {secs} | " + " | ".join(cells) + " |")
    ref = columns[labels[0]]
    for row in ROWS:
        if row == "TTS SECS, different real speakers" or row not in ref:
            continue
        cells = ["(reference)"]
        for c in list(columns.values())[1:]:
            if row not in c or ref[row] == 0:
                cells.append("–")
                continue
            rel = (c[row] - ref[row]) / abs(ref[row])
            ok = rel <= RELATIVE_BAR if row in LOWER_IS_BETTER else rel >= -RELATIVE_BAR
            cells.append(_mark(ok, f"{100 * rel:+.1f}%"))
        lines.append(f"| {row}: within {100 * RELATIVE_BAR:g}% relative of {labels[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def confusion_panels(systems: dict[str, dict]) -> dict[str, dict]:
    """LID/GID confusion results of every system, titled `<system> <set>`."""
    return {f"{label} {name.removeprefix('decode_')}": s for label, scores in systems.items()
            for name, s in scores.items() if s["task"] in ("lid", "gid")}
