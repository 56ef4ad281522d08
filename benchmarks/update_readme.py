"""Write a benchmark's markdown table into README.md between its markers, so README shows measured
numbers only: `python3 benchmarks/update_readme.py NAME TABLE.md` replaces the text between
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->` (both must already be in README.md)."""

from __future__ import annotations

import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def update(name: str, table: str, readme: Path = README) -> None:
    text = readme.read_text(encoding="utf-8")
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if start not in text or end not in text:
        sys.exit(f"error: {readme}: markers {start} ... {end} not found (add them where the table belongs)")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table.strip()}\n{end}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    update(sys.argv[1], Path(sys.argv[2]).read_text(encoding="utf-8"))
