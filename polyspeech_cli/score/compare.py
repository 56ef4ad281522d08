"""The paper's table: single-task vs multitask on every metric, from each system's scores.json.

Rows: ASR CER, TTS SECS (with the SECS between different real speakers for reference), TTS CER
(our ASR on the synthesized audio: an ASR decode dir named `decode_asr_tts*`), LID and GID accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError

ROWS = ("ASR CER %", "TTS SECS", "TTS SECS, different real speakers", "TTS CER %", "LID accuracy %", "GID accuracy %")


def metrics(scores: dict[str, dict]) -> dict[str, float]:
    """The table's numbers from one system's scores.json (missing ones are left out)."""
    out: dict[str, float] = {}
    for name, s in scores.items():
        if s["task"] == "asr":
            out["TTS CER %" if name.startswith("decode_asr_tts") else "ASR CER %"] = 100 * s["cer"]["all"]
        elif s["task"] == "tts":
            out["TTS SECS"], out["TTS SECS, different real speakers"] = s["secs"], s["secs_between_speakers"]
        else:
            out[f"{s['task'].upper()} accuracy %"] = 100 * s["accuracy"]
    return out


def compare_table(systems: dict[str, Path]) -> str:
    """Markdown table with one column per system (e.g. single-task, multitask)."""
    columns = {}
    for label, path in systems.items():
        if not Path(path).is_file():
            raise PolyspeechError(f"{path}: scores not found (run `polyspeech score` for the {label} system first)")
        columns[label] = metrics(json.loads(Path(path).read_text(encoding="utf-8")))
    lines = ["| metric | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in ROWS:
        cells = [f"{c[row]:.3f}" if "SECS" in row and row in c else f"{c[row]:.1f}" if row in c else "–" for c in columns.values()]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
