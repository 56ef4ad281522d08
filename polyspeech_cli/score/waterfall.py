"""The TTS back end's loss waterfall: where between the real audio and the LM's tokens the words
are lost, each row read by one judge (the same ASR model) from one test set.

Rows, in the order the back end runs backwards from the listener: the real audio; its mel through
the vocoder alone (the vocoder's ceiling); the speech decoder fed the real features; fed the codec's
decoding of the first K real SSET books; fed the LM's tokens. Each row is an ASR decode of that
row's audio (`decode --task asr` on the TTS decode's `cuts.jsonl.gz`); SECS and MCD come from the
TTS decode it transcribed (none for the real audio).
"""

from __future__ import annotations

from pathlib import Path

from polyspeech_cli.score.compare import metrics, tts_asr_metrics
from polyspeech_cli.score.report import score_decodes
from polyspeech_cli.score.results import judged_tts_decode


def waterfall_rows(judge_decodes: dict[str, Path]) -> dict[str, dict[str, float]]:
    """{label: {"CER %", and for synthesized audio "SECS", "MCD (dB)"}} from each row's judge decode."""
    rows: dict[str, dict[str, float]] = {}
    for label, judge in judge_decodes.items():
        row = {"CER %": tts_asr_metrics(judge)["TTS CER %"]}
        tts = judged_tts_decode(judge)
        if tts is not None:
            m = metrics(score_decodes([tts]), str(tts))
            row |= {"SECS": m["TTS SECS"], "MCD (dB)": m["TTS MCD (dB)"]}
        rows[label] = row
    return rows


def waterfall_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown: one line per row, its CER also as a multiple of the first row's (the real audio)."""
    first = next(iter(rows.values()))["CER %"] if rows else 0.0
    lines = ["| the judge hears | judge CER % | × real audio | SECS | MCD (dB) |", "|---|---|---|---|---|"]
    for label, r in rows.items():
        ratio = f"{r['CER %'] / first:.2f}×" if first > 0 else "–"
        secs = f"{r['SECS']:.3f}" if "SECS" in r else "–"
        mcd = f"{r['MCD (dB)']:.2f}" if "MCD (dB)" in r else "–"
        lines.append(f"| {label} | {r['CER %']:.1f} | {ratio} | {secs} | {mcd} |")
    return "\n".join(lines) + "\n"
