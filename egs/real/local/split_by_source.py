#!/usr/bin/env python3
"""Split one decode of the union of the test sets into one decode dir per data source.

    python3 local/split_by_source.py DECODE_DIR --out-dir DIR --source NAME=CUTS.jsonl.gz ...

The recipe decodes each task once over the union of the sources' test sets (one process: the LM
loads once), then this script writes `DIR/<decode name without "_all">_<NAME>/results.jsonl` with
the rows of that source's cuts only (plus hyp.trn/ref.trn for ASR and a `split.json` naming where
they come from), so `polyspeech score` scores every source on its own and real and generated
numbers are never blended. A row whose id is in no source, or in two, is an error (an id `<cut>-0`, Lhotse's cut id
of a TTS decode's synthesized recording, counts as `<cut>`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def cut_ids(path: Path) -> set[str]:
    from lhotse import CutSet

    return {c.id for c in CutSet.from_file(path)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("decode_dir", type=Path)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--source", action="append", required=True, help="NAME=cuts manifest holding that source's cut ids")
    a = p.parse_args()
    results = a.decode_dir / "results.jsonl"
    if not results.is_file():
        sys.exit(f"error: {results}: not found (run the decode stage first)")
    owner: dict[str, str] = {}
    for spec in a.source:
        name, _, path = spec.partition("=")
        if not name or not path:
            sys.exit(f"error: --source {spec}: give NAME=CUTS.jsonl.gz")
        for i in cut_ids(Path(path)):
            if i in owner:
                sys.exit(f"error: cut id '{i}' belongs to both {owner[i]} and {name}")
            owner[i] = name
    rows: dict[str, list[str]] = {}
    for line in results.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        # ASR of synthesized audio: the TTS decode's manifest names each cut <utterance id>-0 (Lhotse)
        src = owner.get(row["id"]) or owner.get(row["id"].rsplit("-", 1)[0])
        if src is None:
            sys.exit(f"error: {results}: row '{row['id']}' is in none of the sources ({', '.join(sorted(set(owner.values())))})")
        rows.setdefault(src, []).append(line)
    stem = a.decode_dir.name.replace("_all", "")
    for src, lines in sorted(rows.items()):
        out = a.out_dir / f"{stem}_{src}"
        tmp = a.out_dir / f".tmp.{stem}_{src}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        parsed = [json.loads(x) for x in lines]
        if parsed[0]["task"] == "asr":
            (tmp / "hyp.trn").write_text("".join(f"{r['hyp']} ({r['id']})\n" for r in parsed), encoding="utf-8")
            (tmp / "ref.trn").write_text("".join(f"{r['ref']} ({r['id']})\n" for r in parsed), encoding="utf-8")
        (tmp / "split.json").write_text(json.dumps({"from": str(a.decode_dir.resolve()), "source": src, "num_utts": len(lines)}) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.replace(out)
    print(f"{a.decode_dir.name}: " + ", ".join(f"{src} {len(v)}" for src, v in sorted(rows.items())) + f" -> {a.out_dir}")


if __name__ == "__main__":
    main()
