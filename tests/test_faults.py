"""Bad-input faults of issue 22 that have no other test file: the --help flags, the exp-dir lock."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("verb", [["train", "lm"], ["bench", "train"], ["transcribe"], []])
def test_help_shows_no_value_for_flags(run_cli, verb):
    """`--help -h` (and every other flag) takes no value: no `<bool>` in its row; options with a value keep their type."""
    for flag in ("--help", "-h"):
        r = run_cli(*verb, flag)
        assert r.exit_code == 0, r.output
        assert "Usage:" in r.output and "<bool>" not in r.output, r.output
        help_rows = [ln for ln in r.output.splitlines() if "--help" in ln and "-h" in ln]
        assert len(help_rows) == 1 and "Show this message and exit." in help_rows[0], r.output
    if verb == ["train", "lm"]:
        rows = {}
        for ln in r.output.splitlines():
            first = next((w for w in ln.split() if w.startswith("--")), None)
            if first and ln.lstrip("│ *").startswith("--"):
                rows[first] = ln
        assert "<path>" in rows["--config"] and "<int>" in rows["--max-steps"]  # values keep their type
        assert "--resume" in rows and "<" not in rows["--resume"]
