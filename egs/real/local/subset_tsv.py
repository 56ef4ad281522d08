#!/usr/bin/env python3
"""A deterministic subset of a manifest.tsv folder, written as a new manifest.tsv folder.

    python3 local/subset_tsv.py SRC_DIR OUT_DIR [--per-speaker N] [--max-utts M] [--seed S]

At most N utterances per speaker (0 = all), then at most M in all (0 = all), taken round-robin over
the speakers and alternating the genders, so a small subset keeps both genders and as many
speakers as it can. `path` becomes absolute (the audio stays where it is). The file is rewritten only
when its content changes, so `polyspeech prepare` (which stamps manifest.tsv) stays a no-op on re-runs.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections import defaultdict
from pathlib import Path


def pick(rows: list[dict], per_speaker: int, max_utts: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    by_spk: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["utt_id"]):
        by_spk[r["speaker"]].append(r)
    for spk in sorted(by_spk):
        rng.shuffle(by_spk[spk])
        if per_speaker > 0:
            by_spk[spk] = by_spk[spk][:per_speaker]
    if max_utts <= 0:
        return [r for spk in sorted(by_spk) for r in by_spk[spk]]
    # Round-robin over speakers (in a seeded order), genders alternating within each round.
    speakers = sorted(by_spk)
    rng.shuffle(speakers)
    by_gender: dict[str, list[str]] = defaultdict(list)
    for spk in speakers:
        by_gender[by_spk[spk][0]["gender"]].append(spk)
    order: list[str] = []
    queues = [by_gender[g] for g in sorted(by_gender)]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    out: list[dict] = []
    for rank in range(max(len(v) for v in by_spk.values())):
        for spk in order:
            if rank < len(by_spk[spk]) and len(out) < max_utts:
                out.append(by_spk[spk][rank])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--per-speaker", type=int, default=0)
    p.add_argument("--max-utts", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    tsv = a.src / "manifest.tsv"
    if not tsv.is_file():
        sys.exit(f"error: {tsv}: not found (pass a folder with manifest.tsv)")
    with open(tsv, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header, rows = reader.fieldnames or [], list(reader)
    chosen = pick(rows, a.per_speaker, a.max_utts, a.seed)
    lines = ["\t".join(header)]
    for r in chosen:
        r = dict(r, path=str((a.src / r["path"]).resolve()))
        lines.append("\t".join(r.get(k) or "" for k in header))
    text = "\n".join(lines) + "\n"
    out = a.out / "manifest.tsv"
    if out.is_file() and out.read_text(encoding="utf-8") == text:
        print(f"{out}: {len(chosen)} of {len(rows)} utterances, unchanged")
        return
    a.out.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".manifest.tsv.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    n_spk = len({r["speaker"] for r in chosen})
    print(f"{out}: {len(chosen)} of {len(rows)} utterances, {n_spk} speakers")


if __name__ == "__main__":
    main()
