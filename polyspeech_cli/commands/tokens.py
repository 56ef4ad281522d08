"""`polyspeech extract-tokens` (not built yet)."""

from polyspeech_cli.commands import cli_command, not_built


@cli_command
def extract_tokens() -> None:
    """Extract fbank / HuBERT features or EnCodec / k-means / SSET tokens for a cut set."""
    not_built("extract-tokens", "issue 3: speech representations and the SSET codec")
