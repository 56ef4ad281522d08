"""`polyspeech score`: CER/WER, accuracy, SECS into RESULTS.md."""

from __future__ import annotations

from polyspeech_cli.commands import cli_command, not_built


@cli_command
def score() -> None:
    """Score decoding outputs (CER/WER, accuracy, SECS) into RESULTS.md."""
    not_built("score", "issue 6: scoring and RESULTS.md")
