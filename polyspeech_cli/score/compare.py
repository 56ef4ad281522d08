"""The paper's table: single-task vs multitask on every metric, from each system's scores.json.

Rows: ASR CER, TTS SECS (with the SECS between different real speakers for reference), TTS MCD
(mel-cepstral distortion against the real utterance, DTW-aligned; lower is better), TTS CER
(an ASR model's transcripts of the synthesized audio, given explicitly: `--tts-asr LABEL=DECODE_DIR`
or `LABEL=scores.json`), LID and GID accuracy. Below it: the quality bars, a recipe input (a YAML
file, e.g. egs/mini/conf/quality_bars.yaml) checked against the numbers, and (from the LM exp dirs)
each model's training budget and a figure of the training curves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError

ROWS = ("ASR CER %", "TTS SECS", "TTS SECS, different real speakers", "TTS MCD (dB)", "TTS CER %", "LID accuracy %", "GID accuracy %")
LOWER_IS_BETTER = ("ASR CER %", "TTS MCD (dB)", "TTS CER %")  # the relative bar allows these to rise, the others to fall


@dataclass
class QualityBars:
    """A recipe's quality bars (`--bars FILE`); a bar left out (null) is not checked."""

    asr_cer_max: float | None = None  # %, checked per language
    asr_cer_max_per_language: dict[str, float] | None = None  # %, per language code; overrides asr_cer_max for those
    lid_accuracy_min: float | None = None  # %
    gid_accuracy_min: float | None = None  # %
    tts_cer_max: float | None = None  # %, ASR of the synthesized audio
    tts_secs_above_between_speakers: bool = False  # TTS SECS > SECS between different real speakers
    relative_to_first: float | None = None  # later systems within this fraction (0.10 = 10%) of the first, per metric
    no_worse_than_first: list[str] | None = None  # rows where later systems must match or beat the first (e.g. LID accuracy %)


def load_bars(path: Path) -> QualityBars:
    """The bars of a YAML file (strict keys: a misspelt bar is an error naming it)."""
    from polyspeech_cli.config import load_config

    bars = load_config(path, QualityBars)
    if bars.relative_to_first is not None and not bars.relative_to_first >= 0:
        raise PolyspeechError(f"{path}: relative_to_first must be a fraction >= 0 (e.g. 0.10 for 10%)")
    return bars


def metrics(scores: dict[str, dict], where: str = "scores") -> dict[str, float]:
    """The table's numbers from one system's scores.json (missing ones are left out); per-language
    ASR CERs under `ASR CER % (<lang>)`. TTS CER comes from `tts_asr_metrics`, not from here."""
    out: dict[str, float] = {}
    asr = [name for name, s in scores.items() if s["task"] == "asr"]
    if len(asr) > 1:
        raise PolyspeechError(f"{where}: holds {len(asr)} ASR decodes ({', '.join(asr)}); a system has one ASR test set "
                              "(score an ASR decode of TTS audio on its own and pass it with --tts-asr LABEL=DECODE_DIR)")
    for s in scores.values():
        if s["task"] == "asr":
            out["ASR CER %"] = 100 * s["cer"]["all"]
            out |= {f"ASR CER % ({lang})": 100 * v for lang, v in s["cer"].items() if lang != "all"}
        elif s["task"] == "tts":
            out["TTS SECS"], out["TTS SECS, different real speakers"] = s["secs"], s["secs_between_speakers"]
            if "mcd" in s:  # scores.json written before MCD was scored: the row stays "–"
                out["TTS MCD (dB)"] = s["mcd"]
        else:
            out[f"{s['task'].upper()} accuracy %"] = 100 * s["accuracy"]
    return out


def tts_asr_metrics(path: Path) -> dict[str, float]:
    """`TTS CER %` from an ASR decode of synthesized audio: a decode dir (its results.jsonl is
    scored here) or a scores.json holding exactly one ASR entry."""
    path = Path(path)
    if path.is_dir():
        from polyspeech_cli.score.asr import score_asr
        from polyspeech_cli.score.results import read_results

        task, rows = read_results(path)
        if task != "asr":
            raise PolyspeechError(f"{path}: a '{task}' decode; --tts-asr wants an ASR decode of synthesized audio")
        return {"TTS CER %": 100 * score_asr(rows, path.name)["cer"]["all"]}
    asr = [s for s in load_scores(path, "--tts-asr").values() if s["task"] == "asr"]
    if len(asr) != 1:
        raise PolyspeechError(f"{path}: holds {len(asr)} ASR results; --tts-asr wants a decode dir or a scores.json with exactly one")
    return {"TTS CER %": 100 * asr[0]["cer"]["all"]}


def _cell(row: str, c: dict[str, float]) -> str:
    if row not in c:
        return "–"
    if "SECS" in row:
        return f"{c[row]:.3f}"
    return f"{c[row]:.2f}" if "MCD" in row else f"{c[row]:.1f}"


def load_scores(path: Path, what: str) -> dict[str, dict]:
    """One scores.json; a missing or broken file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise PolyspeechError(f"{path}: scores not found (run `polyspeech score` for {what} first)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PolyspeechError(f"{path}: not a scores.json written by `polyspeech score` ({e}); score again") from None


def load_systems(systems: dict[str, Path]) -> dict[str, dict]:
    """{label: scores.json contents}; a missing file is a one-line error."""
    return {label: load_scores(path, f"the {label} system") for label, path in systems.items()}


def compare_table(columns: dict[str, dict[str, float]], only_present: bool = False) -> str:
    """Markdown table with one column of `metrics` per system (e.g. single-task, multitask);
    `only_present`: just the rows some column has."""
    lines = ["| metric | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    rows = [r for r in ROWS if not only_present or any(r in c for c in columns.values())]
    lines += [f"| {row} | " + " | ".join(_cell(row, c) for c in columns.values()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _mark(ok: bool | None, text: str) -> str:
    return text if ok is None else f"{'✓' if ok else '✗'} {text}"


def quality_bars(columns: dict[str, dict[str, float]], bars: QualityBars) -> str:
    """The recipe's quality bars, each checked per system (✓/✗ and the measured number); with
    `relative_to_first`, the systems after the first are also checked to be within that relative
    distance of the first. Bars that are not set are left out."""
    langs = sorted({k[len("ASR CER % (") : -1] for c in columns.values() for k in c if k.startswith("ASR CER % (")})
    checks: list[tuple[str, Callable]] = []
    per_language = {lang: (bars.asr_cer_max_per_language or {}).get(lang, bars.asr_cer_max) for lang in langs}
    checks += [(f"ASR CER ≤ {cap:g}% ({lang})", lambda c, r=f"ASR CER % ({lang})", cap=cap: (r, c[r] <= cap))
               for lang, cap in per_language.items() if cap is not None]
    if bars.lid_accuracy_min is not None:
        checks.append((f"LID accuracy ≥ {bars.lid_accuracy_min:g}%", lambda c: ("LID accuracy %", c["LID accuracy %"] >= bars.lid_accuracy_min)))
    if bars.gid_accuracy_min is not None:
        checks.append((f"GID accuracy ≥ {bars.gid_accuracy_min:g}%", lambda c: ("GID accuracy %", c["GID accuracy %"] >= bars.gid_accuracy_min)))
    if bars.tts_cer_max is not None:
        checks.append((f"TTS CER ≤ {bars.tts_cer_max:g}%", lambda c: ("TTS CER %", c["TTS CER %"] <= bars.tts_cer_max)))
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
    if bars.tts_secs_above_between_speakers:
        diff = "TTS SECS, different real speakers"
        cells = [_mark(c["TTS SECS"] > c[diff], f"{c['TTS SECS']:.3f} vs {c[diff]:.3f}") if "TTS SECS" in c else "–" for c in columns.values()]
        lines.append("| TTS SECS above SECS of different real speakers | " + " | ".join(cells) + " |")
    if bars.relative_to_first is not None:
        rel_bar, ref = bars.relative_to_first, columns[labels[0]]
        for row in ROWS:
            if row == "TTS SECS, different real speakers" or row not in ref:
                continue
            cells = ["(reference)"]
            for c in list(columns.values())[1:]:
                if row not in c or ref[row] == 0:
                    cells.append("–")
                    continue
                rel = (c[row] - ref[row]) / abs(ref[row])
                ok = rel <= rel_bar if row in LOWER_IS_BETTER else rel >= -rel_bar
                cells.append(_mark(ok, f"{100 * rel:+.1f}%"))
            lines.append(f"| {row}: within {100 * rel_bar:g}% relative of {labels[0]} | " + " | ".join(cells) + " |")
    for row in bars.no_worse_than_first or []:
        if row not in ROWS:
            raise PolyspeechError(f"quality bars: no_worse_than_first names '{row}', not a row of the table ({', '.join(ROWS)})")
        ref = columns[labels[0]]
        cells = ["(reference)"] + [
            _mark((c[row] <= ref[row]) if row in LOWER_IS_BETTER else (c[row] >= ref[row]), f"{_cell(row, c)} vs {_cell(row, ref)}")
            if row in c and row in ref else "–" for c in list(columns.values())[1:]]
        lines.append(f"| {row}: no worse than {labels[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def confusion_panels(systems: dict[str, dict]) -> dict[str, dict]:
    """LID/GID confusion results of every system, titled `<system> <set>`."""
    return {f"{label} {name.removeprefix('decode_')}": s for label, scores in systems.items()
            for name, s in scores.items() if s["task"] in ("lid", "gid")}
