#!/usr/bin/env python3
"""Assemble egs/real/RESULTS.md from the per-source `polyspeech compare` outputs.

    python3 local/results_md.py --out RESULTS.md --sources "a b ..." --score-dir exp/score \
        --data-dir data [--judge-dir DIR --judge LABEL] [--mini-dir exp/mini_eval] [--notes local/limits.md]

`polyspeech compare` writes one single-task vs multitask table per call (exp/score/<src>/compare.md,
one call per source); this puts them under one heading each (`## <src>`), after the environment, a
table of the sets and their splits, and one table of every source's numbers side by side (each cell
is that source's own number: nothing is averaged over sources). The training budgets and curves
(from the one compare call given --lm-dir) come once; the PNGs are copied beside RESULTS.md as
RESULTS_<name>.png. With --mini-dir, the scores of egs/mini's multitask model on each test set
(`polyspeech evaluate`, stage 7) get their own section.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

SPLITS = ("train", "dev", "test")


def sections(md: str) -> list[tuple[str, str]]:
    """(heading, body) of each `## ` section; the text before the first one is dropped."""
    out: list[tuple[str, list[str]]] = []
    for line in md.splitlines():
        if line.startswith("## "):
            out.append((line[3:].strip(), []))
        elif out:
            out[-1][1].append(line)
    return [(h, "\n".join(b).strip("\n")) for h, b in out]


def copy_images(body: str, src_dir: Path, out_dir: Path, prefix: str) -> str:
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
    from lhotse import CutSet

    lines = ["| source | train utts / spk | dev utts / spk | test utts / spk | test min | test speakers unseen in training | languages | genders |",
             "|---|---|---|---|---|---|---|---|"]
    for src in sources:
        info = {}
        for split in SPLITS:
            path = data_dir / f"{src}_cuts_{split}.jsonl.gz"
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


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def summary_table(score_dir: Path, sources: list[str], judge_dir: Path | None) -> str:
    from polyspeech_cli.score.compare import metrics, tts_asr_metrics

    rows = ("ASR CER %", "TTS SECS", "TTS SECS, different real speakers", "TTS CER %", "LID accuracy %", "GID accuracy %")
    head = "| source | " + " | ".join(rows) + " |"
    lines = [head, "|---" * (len(rows) + 1) + "|"]
    for src in sources:
        cols = {}
        for label, sub, tts_dir in (("single", "single", "tts"), ("multi", "multi", "multi")):
            m = metrics(load(score_dir / src / sub / "scores.json"))
            judged = judge_dir / f"decode_asr_tts_{tts_dir}_{src}" if judge_dir else None
            if judged is not None and judged.is_dir():
                m |= tts_asr_metrics(judged)
            cols[label] = m

        def cell(row: str) -> str:
            vals = [cols[k].get(row) for k in ("single", "multi")]
            if all(v is None for v in vals):
                return "–"
            fmt = (lambda v: f"{v:.3f}") if "SECS" in row else (lambda v: f"{v:.1f}")
            if row == "TTS SECS, different real speakers":
                return fmt(vals[1] if vals[1] is not None else vals[0])
            return " / ".join("–" if v is None else fmt(v) for v in vals)

        lines.append(f"| {src} | " + " | ".join(cell(r) for r in rows) + " |")
    return "\n".join(lines) + "\n"


def evaluate_metrics(scores: dict) -> dict[str, float]:
    """The table's numbers from an `evaluate` scores.json (score_dirs' format): an ASR decode of
    synthesized audio (its name says tts) is the TTS CER, not the ASR CER."""
    out: dict[str, float] = {}
    for name, s in scores.items():
        if s.get("task") == "asr":
            out["TTS CER %" if "tts" in name else "ASR CER %"] = 100 * s["cer"]["all"]
        elif s.get("task") == "tts":
            out["TTS SECS"] = s["secs"]
        elif s.get("task") in ("lid", "gid"):
            out[f"{s['task'].upper()} accuracy %"] = 100 * s["accuracy"]
    return out


def mini_section(mini_dir: Path, sources: list[str]) -> str:
    rows = ("ASR CER %", "TTS SECS", "TTS CER %", "LID accuracy %", "GID accuracy %")
    lines = ["| source | " + " | ".join(rows) + " | details |", "|---" * (len(rows) + 2) + "|"]
    found = False
    for src in sources:
        d = mini_dir / src
        if not (d / "RESULTS.md").is_file():
            continue
        found = True
        try:
            m = evaluate_metrics(load(d / "scores.json"))
        except (KeyError, TypeError, AttributeError):  # another layout of scores.json: the row links the report
            m = {}
        cells = [(f"{m[r]:.3f}" if "SECS" in r else f"{m[r]:.1f}") if r in m else "–" for r in rows]
        lines.append(f"| {src} | " + " | ".join(cells) + f" | `{d / 'RESULTS.md'}` |")
    return "\n".join(lines) + "\n" if found else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sources", required=True)
    p.add_argument("--score-dir", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--judge-dir", type=Path, help="by_source dir of the TTS judge's ASR decodes of TTS audio")
    p.add_argument("--judge", default="", help="label of the judge system (single-task / multitask)")
    p.add_argument("--mini-dir", type=Path)
    p.add_argument("--mini-exp", default="")
    p.add_argument("--notes", type=Path)
    p.add_argument("--header", type=Path, help="markdown put after the environment (what the recipe ran)")
    p.add_argument("--section", type=Path, action="append", default=[],
                   help="a markdown file put before the notes as its own section (e.g. stage 8's peer table); repeatable")
    a = p.parse_args()
    sources = a.sources.split()
    out_dir = a.out.resolve().parent
    for old in out_dir.glob("RESULTS_*.png"):
        old.unlink()
    env, budgets, curves, parts = "", "", "", []
    for src in sources:
        md_path = a.score_dir / src / "compare.md"
        if not md_path.is_file():
            parts.append(f"## {src}\n\n(not scored: {md_path} is missing)\n")
            continue
        body = []
        for head, text in sections(md_path.read_text(encoding="utf-8")):
            text = copy_images(text, md_path.parent, out_dir, src)
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
    doc = ["# egs/real: RESULTS (recorded human speech)\n", f"## Environment\n\n{env}\n"]
    if a.header and a.header.is_file():
        doc.append(a.header.read_text(encoding="utf-8").rstrip() + "\n")
    doc.append("## Sets and splits\n\n" + split_table(a.data_dir, sources))
    judge = f" TTS CER: the {a.judge} ASR model (lower dev error) transcribing the synthesized audio." if a.judge else ""
    doc.append("## Every source side by side (single-task / multitask)\n\n"
               "Each cell is that source's own test set; nothing is averaged over sources. "
               "`TTS SECS, different real speakers` is the line to beat: SECS between the real test audio of the three TTS voices "
               f"(cathy, LJSpeech, MagicData; all female).{judge}\n\n" + summary_table(a.score_dir, sources, a.judge_dir))
    doc += parts
    if budgets or curves:
        doc.append("## Training budgets and curves (all LMs are trained on the union of the sources' train splits)\n\n"
                   f"{budgets}\n\n{curves}\n")
    if a.mini_dir:
        table = mini_section(a.mini_dir, sources)
        if table:
            doc.append(f"## egs/mini's multitask model on each test set\n\n`polyspeech evaluate --exp-dir {a.mini_exp or '…'}` "
                       "on each source's test cuts (stage 7): a model trained only on generated eSpeak NG speech.\n\n" + table)
    for extra in a.section:
        if extra.is_file():
            doc.append(extra.read_text(encoding="utf-8").rstrip() + "\n")
    if a.notes and a.notes.is_file():
        doc.append(a.notes.read_text(encoding="utf-8").rstrip() + "\n")
    text = "\n".join(doc)
    tmp = a.out.with_name(".tmp." + a.out.name)
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(a.out)
    print(f"wrote {a.out} ({len(sources)} sources)")


if __name__ == "__main__":
    main()
