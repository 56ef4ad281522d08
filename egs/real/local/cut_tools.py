#!/usr/bin/env python3
"""Small Lhotse cut-manifest edits of the egs/real recipe; each writes OUT only when its stamp
(`polyspeech_cli.stamps`: the command, its options and the identity of every input, in the list's
order) differs from the one OUT was made with, so a re-run leaves the file, and every stamp that
names it, untouched, and another input list (e.g. without speed-perturbed copies) rewrites it.

    python3 local/cut_tools.py lid-only IN OUT        # keep `language` only: no text, no gender
    python3 local/cut_tools.py speed IN OUT --factors 0.9,1.1   # speed-perturbed copies (Lhotse)

(One manifest of several: `combine_cuts OUT IN...` of utils/recipe_lib.sh, the same stamps.)

`lid-only` is how generated speech joins the LM's training set for LID alone: the LM makes ASR/TTS
examples only from cuts with text and GID examples only from cuts with a gender
(polyspeech_cli/lm/tasks.py, `has_labels`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def stamp_of(out: Path) -> Path:
    return out.with_name(f".{out.name}.stamp.json")


def write(cuts, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".tmp." + out.name)
    cuts.to_file(tmp)
    tmp.replace(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    lid = sub.add_parser("lid-only")
    lid.add_argument("inp", type=Path)
    lid.add_argument("out", type=Path)
    sp = sub.add_parser("speed")
    sp.add_argument("inp", type=Path)
    sp.add_argument("out", type=Path)
    sp.add_argument("--factors", default="0.9,1.1")
    a = p.parse_args()
    inputs = [a.inp]
    missing = [i for i in inputs if not i.is_file()]
    if missing:
        sys.exit(f"error: {missing[0]}: not found (run the earlier stages first)")
    from polyspeech_cli.stamps import is_fresh, stamp_key, write_stamp

    key = stamp_key({"cmd": a.cmd, "factors": getattr(a, "factors", None)}, inputs)
    if is_fresh(stamp_of(a.out), key):
        print(f"{a.out}: up to date")
        return
    from lhotse import CutSet

    if a.cmd == "lid-only":
        def strip(c):
            return c.map_supervisions(lambda s: dataclasses.replace(s, text="", gender=None))

        cuts = CutSet.from_file(a.inp).map(strip)
    else:
        base = CutSet.from_file(a.inp).to_eager()
        factors = [float(f) for f in a.factors.split(",") if f.strip()]
        cuts = CutSet.from_cuts(c.perturb_speed(f) for f in factors for c in base)
    write(cuts, a.out)
    write_stamp(stamp_of(a.out), key, [a.out])
    print(f"{a.out}: {len(cuts)} cuts")


if __name__ == "__main__":
    main()
