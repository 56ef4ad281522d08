"""`polyspeech train lm` (not built yet)."""

from polyspeech_cli.commands import cli_command, not_built


@cli_command
def train_lm() -> None:
    """Train the multitask (or single-task) decoder-only LM."""
    not_built("train lm", "issue 4: the multitask LM")
