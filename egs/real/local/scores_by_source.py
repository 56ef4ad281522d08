#!/usr/bin/env python3
"""Split each system's scores.json (one `polyspeech score` call over every source's decode dirs)
into one scores.json per source, the input of that source's `polyspeech compare` table.

    python3 local/scores_by_source.py --score-dir exp/score --sources "a b ..." --systems "multi single resynth" \
        [--line SYSTEM:DECODE_NAME]

Reads SCORE_DIR/all/<system>/scores.json, whose entries are named after the decode dirs
(`decode_<task>_<source>`, `decode_tts_resynth_<source>`), and writes
SCORE_DIR/<source>/<system>/scores.json with that source's entries only: a source's numbers are never
mixed with another's.

`--line multi:decode_tts_all`: each TTS voice is one speaker, so a TTS score of one source has no
pair of different speakers (`secs_between_speakers` is NaN). The named entry is the TTS score of
all voices' test sets together; its `secs_between_speakers` (SECS between the real test audio of
different voices) is written into every per-source TTS entry, with `secs_between_speakers_from`
saying so. Each voice's own SECS is untouched.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def owner(name: str, sources: list[str]) -> str | None:
    for src in sorted(sources, key=len, reverse=True):
        if name.endswith("_" + src):
            return src
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--score-dir", type=Path, required=True)
    p.add_argument("--sources", required=True)
    p.add_argument("--systems", default="multi single resynth")
    p.add_argument("--line", default="", help="SYSTEM:DECODE_NAME of the TTS score over all voices")
    a = p.parse_args()
    sources = a.sources.split()
    line = None
    if a.line:
        system, _, name = a.line.partition(":")
        entry = json.loads((a.score_dir / "all" / system / "scores.json").read_text()).get(name)
        if not entry or entry.get("task") != "tts" or not math.isfinite(entry["secs_between_speakers"]):
            sys.exit(f"error: --line {a.line}: no TTS score over several speakers named {name} in {a.score_dir / 'all' / system}")
        line = (entry["secs_between_speakers"], f"{system}/{name}")
    counts = {}
    for system in a.systems.split():
        path = a.score_dir / "all" / system / "scores.json"
        if not path.is_file():
            continue
        per: dict[str, dict] = {}
        for name, s in json.loads(path.read_text()).items():
            src = owner(name, sources)
            if src is None:
                continue  # e.g. the all-voices TTS score (the line)
            if s["task"] == "tts" and line and not math.isfinite(s.get("secs_between_speakers", float("nan"))):
                s["secs_between_speakers"], s["secs_between_speakers_from"] = line
            per.setdefault(src, {})[name] = s
        for src, entries in per.items():
            out = a.score_dir / src / system / "scores.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(entries, indent=1))
        counts[system] = len(per)
    extra = f"; SECS line of different real speakers {line[0]:.3f} ({line[1]})" if line else ""
    print("per-source scores: " + ", ".join(f"{k} {v} sources" for k, v in counts.items()) + extra)


if __name__ == "__main__":
    main()
