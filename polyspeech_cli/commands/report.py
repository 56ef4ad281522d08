"""`polyspeech report`: one self-contained HTML results page (tables, figures, TTS audio) per recipe run."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from polyspeech_cli.commands import cli_command, console


@cli_command
def report(
    directory: Annotated[Path, typer.Argument(help="A recipe dir holding RESULTS.md and exp/ (e.g. egs/mini), or an exp dir holding RESULTS.md.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="HTML page to write (default: RESULTS.html in DIR).")] = None,
    utts: Annotated[int, typer.Option("--utts", help="TTS test sentences to embed with their audio and scores (0: none).")] = 4,
    vocoders: Annotated[Optional[Path], typer.Option("--vocoders", help="A `bench vocoder --wav-dir` folder: its sentences through "
                                                     "each vocoder, side by side (default: DIR/exp/vocoders where a run wrote one).")] = None,
) -> None:
    """One static HTML page of a run: RESULTS.md's tables and figures, and TTS test sentences to listen to
    (prompt, real recording, each system's audio, resynthesized real tokens) with their scores, and the vocoders side by
    side on the same real sentences (a `bench vocoder --wav-dir` run); no other files needed."""
    from polyspeech_cli.score.html_report import write_report

    page = write_report(directory, out, utts, vocoders)
    for note in page.notes:
        console.print(f"left out: {note}", highlight=False, soft_wrap=True)
    console.print(f"wrote {page.path} (TTS sentences: {len(page.utterances)}, {page.path.stat().st_size / 1e6:.1f} MB)", highlight=False)
