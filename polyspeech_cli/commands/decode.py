"""`polyspeech decode`: ASR / LID / GID / TTS decoding with a trained LM."""

from __future__ import annotations

from polyspeech_cli.commands import cli_command, not_built


@cli_command
def decode() -> None:
    """Decode a cut set with a trained LM (ASR, LID, GID or TTS)."""
    not_built("decode", "issue 5: decoding and speech synthesis")
