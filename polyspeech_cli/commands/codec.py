"""`polyspeech train codec` (not built yet)."""

from polyspeech_cli.commands import cli_command, not_built


@cli_command
def train_codec() -> None:
    """Train the SSET codec (conv encoder-decoder with residual VQ) on continuous features."""
    not_built("train codec", "issue 3: speech representations and the SSET codec")
