"""Results of several data sources scored one by one (egs/real): each source's numbers on their own,
never averaged over sources.

`split_scores`: a system's scores.json (one `polyspeech score` call over every source's decode dirs,
named `decode_<task>_<source>`) into one scores.json per source, the input of that source's
`polyspeech compare` table (`polyspeech split-scores`).

`write_sources_page`: one RESULTS.md from the per-source `polyspeech compare` pages (`compare.md`
under SCORE_DIR/<source>/): the environment, a table of the sources' splits, every source's numbers
side by side (each cell is that source's own number), one section per source, the training budgets
and curves once, optional sections (egs/mini's model on each test set, a peer system) and notes
(`polyspeech compare-sources`).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_write_text
from polyspeech_cli.score.compare import metrics, tts_asr_metrics

SPLITS = ("train", "dev", "test")


def _owner(name: str, sources: list[str]) -> str | None:
    for src in sorted(sources, key=len, reverse=True):
        if name.endswith("_" + src):
            return src
    return None


def split_scores(score_dir: Path, sources: list[str], systems: list[str], line: str = "") -> str:
    """SCORE_DIR/all/<system>/scores.json -> SCORE_DIR/<source>/<system>/scores.json (that source's
    entries only). `line` = SYSTEM:DECODE_NAME, the TTS score of all voices' test sets together: a TTS
    voice is one speaker, so a per-source TTS score has no pair of different speakers
    (`secs_between_speakers` NaN); the line's value is written into each such entry, with
    `secs_between_speakers_from` saying so. Returns a one-line summary."""
    score_dir = Path(score_dir)
    found = None
    if line:
        system, _, name = line.partition(":")
        path = score_dir / "all" / system / "scores.json"
        entry = json.loads(path.read_text(encoding="utf-8")).get(name) if path.is_file() else None
        if not entry or entry.get("task") != "tts" or not math.isfinite(entry["secs_between_speakers"]):
            raise PolyspeechError(f"--line {line}: no TTS score over several speakers named {name} in {score_dir / 'all' / system}")
        found = (entry["secs_between_speakers"], f"{system}/{name}")
    counts = {}
    for system in systems:
        path = score_dir / "all" / system / "scores.json"
        if not path.is_file():
            continue
        per: dict[str, dict] = {}
        for name, s in json.loads(path.read_text(encoding="utf-8")).items():
            src = _owner(name, sources)
            if src is None:
                continue  # e.g. the all-voices TTS score (the line)
            if s["task"] == "tts" and found and not math.isfinite(s.get("secs_between_speakers", float("nan"))):
                s["secs_between_speakers"], s["secs_between_speakers_from"] = found
            per.setdefault(src, {})[name] = s
        for src, entries in per.items():
            out = score_dir / src / system / "scores.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out, json.dumps(entries, indent=1))
        counts[system] = len(per)
    extra = f"; SECS line of different real speakers {found[0]:.3f} ({found[1]})" if found else ""
    return "per-source scores: " + ", ".join(f"{k} {v} sources" for k, v in counts.items()) + extra


def _sections(md: str) -> list[tuple[str, str]]:
    """(heading, body) of each `## ` section; the text before the first one is dropped."""
    out: list[tuple[str, list[str]]] = []
    for ln in md.splitlines():
        if ln.startswith("## "):
            out.append((ln[3:].strip(), []))
        elif out:
            out[-1][1].append(ln)
    return [(h, "\n".join(b).strip("\n")) for h, b in out]


def _copy_images(body: str, src_dir: Path, out_dir: Path, prefix: str) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(2)
        src = src_dir / name
        if not src.is_file():
            return m.group(0)
        new = f"RESULTS_{prefix}{Path(name).stem.removeprefix('compare')}.png"
        shutil.copyfile(src, out_dir / new)
        return f"{m.group(1)}({new})"

    return re.sub(r"(!\[[^\]]*\])\(([^)]+\.png)\)", repl, body)


def split_table(data_dir: Path, sources: list[str]) -> str:
    """Per source: utterances and speakers of each split, test minutes, speaker-disjointness, languages, genders."""
    from lhotse import CutSet

    lines = ["| source | train utts / spk | dev utts / spk | test utts / spk | test min | test speakers unseen in training | languages | genders |",
             "|---|---|---|---|---|---|---|---|"]
    for src in sources:
        info = {}
        for split in SPLITS:
            path = Path(data_dir) / f"{src}_cuts_{split}.jsonl.gz"
            cuts = list(CutSet.from_file(path)) if path.is_file() else []
            sups = [c.supervisions[0] for c in cuts if c.supervisions]
            info[split] = {"n": len(cuts), "spk": {s.speaker for s in sups}, "min": sum(c.duration for c in cuts) / 60,
                           "lang": {s.language for s in sups}, "gender": {s.gender for s in sups if s.gender}}
        unseen = not (info["test"]["spk"] & info["train"]["spk"])
        cell = {s: f"{info[s]['n']} / {len(info[s]['spk'])}" for s in SPLITS}
        langs = ",".join(sorted(set().union(*(info[s]["lang"] for s in SPLITS)) - {None}))
        genders = ",".join(sorted(set().union(*(info[s]["gender"] for s in SPLITS))))
        lines.append(f"| {src} | {cell['train']} | {cell['dev']} | {cell['test']} | {info['test']['min']:.1f} | "
                     f"{'yes (speaker-disjoint)' if unseen else 'no (split by utterance)'} | {langs} | {genders} |")
    return "\n".join(lines) + "\n"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def summary_table(score_dir: Path, sources: list[str], judge_dir: Path | None) -> str:
    """Every source's single-task / multitask numbers side by side (SCORE_DIR/<source>/{single,multi}/scores.json;
    TTS CER from the judge's decodes JUDGE_DIR/decode_asr_tts_{tts,multi}_<source>)."""
    rows = ("ASR CER %", "TTS SECS", "TTS SECS, different real speakers", "TTS CER %", "LID accuracy %", "GID accuracy %")
    lines = ["| source | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for src in sources:
        cols = {}
        for label, sub, tts_dir in (("single", "single", "tts"), ("multi", "multi", "multi")):
            m = metrics(_load(Path(score_dir) / src / sub / "scores.json"))
            judged = Path(judge_dir) / f"decode_asr_tts_{tts_dir}_{src}" if judge_dir else None
            if judged is not None and judged.is_dir():
                m |= tts_asr_metrics(judged)
            cols[label] = m

        def cell(row: str) -> str:
            vals = [cols[k].get(row) for k in ("single", "multi")]
            if all(v is None for v in vals):
                return "–"
            fmt: Callable[[float], str] = (lambda v: f"{v:.3f}") if "SECS" in row else (lambda v: f"{v:.1f}")
            if row == "TTS SECS, different real speakers":
                return fmt(vals[1] if vals[1] is not None else vals[0])
            return " / ".join("–" if v is None else fmt(v) for v in vals)

        lines.append(f"| {src} | " + " | ".join(cell(r) for r in rows) + " |")
    return "\n".join(lines) + "\n"


def evaluate_metrics(scores: dict) -> dict[str, float]:
    """The table's numbers from an `evaluate` scores.json: an ASR decode of synthesized audio (its
    name says tts) is the TTS CER, not the ASR CER."""
    out: dict[str, float] = {}
    for name, s in scores.items():
        if s.get("task") == "asr":
            out["TTS CER %" if "tts" in name else "ASR CER %"] = 100 * s["cer"]["all"]
        elif s.get("task") == "tts":
            out["TTS SECS"] = s["secs"]
        elif s.get("task") in ("lid", "gid"):
            out[f"{s['task'].upper()} accuracy %"] = 100 * s["accuracy"]
    return out


def mini_table(mini_dir: Path, sources: list[str]) -> str:
    """One row per source that MINI_DIR/<source>/ (a `polyspeech evaluate` output) scored; "" when none."""
    rows = ("ASR CER %", "TTS SECS", "TTS CER %", "LID accuracy %", "GID accuracy %")
    lines = ["| source | " + " | ".join(rows) + " | details |", "|---" * (len(rows) + 2) + "|"]
    found = False
    for src in sources:
        d = Path(mini_dir) / src
        if not (d / "RESULTS.md").is_file():
            continue
        found = True
        try:
            m = evaluate_metrics(_load(d / "scores.json"))
        except (KeyError, TypeError, AttributeError):  # another layout of scores.json: the row links the report
            m = {}
        cells = [(f"{m[r]:.3f}" if "SECS" in r else f"{m[r]:.1f}") if r in m else "–" for r in rows]
        lines.append(f"| {src} | " + " | ".join(cells) + f" | `{d / 'RESULTS.md'}` |")
    return "\n".join(lines) + "\n" if found else ""


@dataclass
class SourcesPage:
    """What `write_sources_page` assembles."""

    sources: list[str]
    score_dir: Path  # <source>/compare.md, <source>/{single,multi}/scores.json
    data_dir: Path  # <source>_cuts_<split>.jsonl.gz: the splits table
    out: Path = Path("RESULTS.md")
    title: str = "RESULTS"
    line_note: str = "SECS between the real test audio of different voices"  # what the different-speakers line is
    judge_dir: Path | None = None  # the TTS judge's by-source decodes of TTS audio
    judge: str = ""  # its label (single-task / multitask)
    mini_dir: Path | None = None  # `polyspeech evaluate` of another model per source
    mini_exp: str = ""
    header: Path | None = None  # markdown after the environment
    sections: list[Path] = field(default_factory=list)  # markdown files, each its own section before the notes
    notes: Path | None = None


def write_sources_page(page: SourcesPage) -> str:
    """Write `page.out` (the per-source PNGs copied beside it as RESULTS_<source>_<name>.png); returns a one-line summary."""
    out = Path(page.out)
    out_dir = out.resolve().parent
    for old in out_dir.glob("RESULTS_*.png"):
        old.unlink()
    env, budgets, curves, parts = "", "", "", []
    for src in page.sources:
        md_path = Path(page.score_dir) / src / "compare.md"
        if not md_path.is_file():
            parts.append(f"## {src}\n\n(not scored: {md_path} is missing)\n")
            continue
        body = []
        for head, text in _sections(md_path.read_text(encoding="utf-8")):
            text = _copy_images(text, md_path.parent, out_dir, src)
            if head == "Environment":
                env = env or text
            elif head == "Training budgets":
                budgets = budgets or text
            else:
                if "_curves.png" in text:  # the training curves are the same for every source: shown once
                    keep = [ln for ln in text.splitlines() if "_curves.png" not in ln]
                    curves = curves or "\n".join(ln for ln in text.splitlines() if "_curves.png" in ln).replace(f"RESULTS_{src}_curves", "RESULTS_curves")
                    src_png = out_dir / f"RESULTS_{src}_curves.png"
                    if src_png.is_file():
                        src_png.replace(out_dir / "RESULTS_curves.png")
                    text = "\n".join(keep)
                body.append(f"### {head}\n\n{text.strip()}\n")
        parts.append(f"## {src}\n\n" + "\n".join(body))
    doc = [f"# {page.title}\n", f"## Environment\n\n{env}\n"]
    if page.header and Path(page.header).is_file():
        doc.append(Path(page.header).read_text(encoding="utf-8").rstrip() + "\n")
    doc.append("## Sets and splits\n\n" + split_table(page.data_dir, page.sources))
    judge = f" TTS CER: the {page.judge} ASR model (lower dev error) transcribing the synthesized audio." if page.judge else ""
    doc.append("## Every source side by side (single-task / multitask)\n\n"
               "Each cell is that source's own test set; nothing is averaged over sources. "
               f"`TTS SECS, different real speakers` is the line to beat: {page.line_note}.{judge}\n\n"
               + summary_table(page.score_dir, page.sources, page.judge_dir))
    doc += parts
    if budgets or curves:
        doc.append("## Training budgets and curves (all LMs are trained on the union of the sources' train splits)\n\n"
                   f"{budgets}\n\n{curves}\n")
    if page.mini_dir:
        table = mini_table(page.mini_dir, page.sources)
        if table:
            doc.append(f"## egs/mini's multitask model on each test set\n\n`polyspeech evaluate --exp-dir {page.mini_exp or '…'}` "
                       "on each source's test cuts (stage 7): a model trained only on generated eSpeak NG speech.\n\n" + table)
    for extra in page.sections:
        if Path(extra).is_file():
            doc.append(Path(extra).read_text(encoding="utf-8").rstrip() + "\n")
    if page.notes and Path(page.notes).is_file():
        doc.append(Path(page.notes).read_text(encoding="utf-8").rstrip() + "\n")
    atomic_write_text(out, "\n".join(doc))
    return f"wrote {out} ({len(page.sources)} sources)"
