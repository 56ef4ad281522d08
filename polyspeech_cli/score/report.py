"""RESULTS.md in ESPnet's style: an environment block, the command lines, one section per decode set."""

from __future__ import annotations

import datetime
import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from polyspeech_cli import __version__
from polyspeech_cli.fileio import atomic_write_text
from polyspeech_cli.score.asr import score_asr
from polyspeech_cli.score.classify import plot_confusions, score_classes
from polyspeech_cli.score.results import read_results
from polyspeech_cli.score.secs import score_tts


def environment() -> str:
    """The environment block: date, python, torch, polyspeech version and git hash."""
    import torch

    try:
        repo = Path(__file__).resolve().parents[2]
        git = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=7"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        git = "unknown"
    return (
        f"- date: `{datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')}`\n"
        f"- python: `{platform.python_version()}`, system: `{platform.system()} {platform.machine()}`\n"
        f"- torch: `{torch.__version__}`\n"
        f"- polyspeech: `{__version__}`, git hash: `{git}`\n"
    )


SCORERS = {"asr": score_asr, "lid": score_classes, "gid": score_classes, "tts": score_tts}


def score_decodes(decode_dirs: list[Path]) -> dict[str, dict]:
    """Score every decode dir: {dir name: {"task", the numbers..., "markdown"}}."""
    return {Path(d).name: score_decode(Path(d)) for d in decode_dirs}


def score_decode(d: Path) -> dict:
    """One decode dir's scores, kept in the dir as ESPnet keeps its scoring (`score_cache.json`, stamped
    on its results.jsonl): a TTS decode's SECS and MCD, minutes of speaker embeddings, are computed
    once however many reports (score, compare, its waterfall) read them."""
    from polyspeech_cli.stamps import is_fresh, stamp_key, write_stamp

    cache, stamp = d / "score_cache.json", d / ".score_cache.stamp.json"
    task, rows = read_results(d)
    key = stamp_key({"scores": task, "name": d.name}, [d / "results.jsonl"])
    if is_fresh(stamp, key):
        return json.loads(cache.read_text(encoding="utf-8"))
    scores = {"task": task, **SCORERS[task](rows, d.name)}
    try:
        atomic_write_text(cache, json.dumps(scores))
        write_stamp(stamp, key, [cache])
    except OSError:  # a read-only decode dir is scored, not cached
        pass
    return scores


def write_results(scores: dict[str, dict], out: Path, commands: list[str] | None = None, notes: str = "") -> None:
    """RESULTS.md (+ scores.json and a confusion PNG) at `out` from `score_decodes`' scores; `notes`:
    a markdown section between the commands and the results (what was evaluated, and how)."""
    command = " ".join(shlex.quote(a) for a in ["polyspeech", *sys.argv[1:]]) if commands is None else None
    lines = ["# RESULTS", "", "## Environment", "", environment(), "## Commands", "", "```bash", *(commands or [command]), "```", ""]
    if notes:
        lines += [notes.rstrip("\n"), ""]
    panels = {name: s for name, s in scores.items() if s["task"] in ("lid", "gid")}
    if panels:
        png = out.with_name(out.stem + "_confusion.png")
        plot_confusions(panels, png)
        lines += [f"![confusion matrices]({png.name})", ""]
    for name, s in scores.items():
        lines += [f"## {name}", "", s["markdown"]]
    atomic_write_text(out, "\n".join(lines))
    atomic_write_text(scores_path(out), json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "markdown"} for k, v in scores.items()}, indent=1))


def scores_path(out: Path) -> Path:
    """The JSON beside a results file: `scores.json` for RESULTS.md (what `compare` and the recipes
    read), `<name>_scores.json` for any other name, so two reports in one folder never share one."""
    out = Path(out)
    return out.with_name("scores.json" if out.stem == "RESULTS" else f"{out.stem}_scores.json")


def score_dirs(decode_dirs: list[Path], out: Path, commands: list[str] | None = None, log=print) -> dict[str, dict]:
    """Score every decode dir and write RESULTS.md (+ scores.json and a confusion PNG) at `out`.

    Skipped when the same decode dirs were scored into `out` and none of their results.jsonl has
    changed since (a stamp beside `out`); the scores are then read back from the JSON."""
    from polyspeech_cli.stamps import is_fresh, stamp_key, write_stamp

    out = Path(out)
    dirs = [Path(d) for d in decode_dirs]
    stamp = out.with_name(f".{out.stem}.score.json")
    results = [d / "results.jsonl" for d in dirs]
    key = stamp_key({"decode_dirs": [str(d.resolve()) for d in dirs]}, [r for r in results if r.is_file()])
    if is_fresh(stamp, key) and len(key["inputs"]) == len(dirs):
        log(f"{out} already scores these decodes: nothing to do")
        return json.loads(scores_path(out).read_text(encoding="utf-8"))
    scores = score_decodes(dirs)
    write_results(scores, out, commands)
    write_stamp(stamp, key, [out, scores_path(out)])
    return scores
