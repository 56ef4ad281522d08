#!/usr/bin/env python3
"""manifest.tsv folders (the shared-data layout the ESPnet peer reads) from prepared Lhotse cuts.

    python3 utils/peer_manifest.py OUT_DIR CUTS...   (egs/real stage 8, egs/mini stage 7)

Writes OUT_DIR/manifest.tsv (utt_id path speaker gender language duration text) with one row per
cut: the cut's own audio file as an absolute path (the peer resolves `path` against the folder, and
an absolute path stays itself), its speaker, gender, language, duration and the *prepared* text,
so that both systems train on and are scored against the same transcripts. Cuts must cover whole
recordings of one audio file each (as `polyspeech prepare tsv` makes them).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    from lhotse import CutSet

    out, inputs = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    rows = []
    for path in inputs:
        for c in CutSet.from_file(path):
            src = c.recording.sources
            if len(src) != 1 or src[0].type != "file" or c.start != 0 or abs(c.duration - c.recording.duration) > 1e-3:
                sys.exit(f"error: {path}: cut {c.id} is not one whole audio file (needs cuts from `polyspeech prepare tsv`)")
            s = c.supervisions[0]
            text = " ".join((s.text or "").split())
            rows.append("\t".join([c.id, str(Path(src[0].source).resolve()), s.speaker or "", s.gender or "", s.language or "",
                                   f"{c.duration:.3f}", text]))
    out.mkdir(parents=True, exist_ok=True)
    text = "utt_id\tpath\tspeaker\tgender\tlanguage\tduration\ttext\n" + "\n".join(rows) + "\n"
    target = out / "manifest.tsv"
    if not target.is_file() or target.read_text(encoding="utf-8") != text:  # unchanged: left alone (stage 8's stamps name it)
        tmp = out / ".manifest.tsv.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    speakers = {r.split("\t")[2] for r in rows}
    print(f"{out / 'manifest.tsv'}: {len(rows)} utts, {len(speakers)} speakers ({' '.join(sorted(speakers))})")


if __name__ == "__main__":
    main()
