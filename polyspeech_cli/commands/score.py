"""`polyspeech score`: CER/WER, accuracy, SECS into RESULTS.md."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from polyspeech_cli.commands import cli_command, console


@cli_command
def score(
    decode_dirs: Annotated[list[Path], typer.Argument(help="decode_<task>_<set>/ directories holding results.jsonl.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="RESULTS.md to write (default: beside the first decode dir).")] = None,
) -> None:
    """Score decoding outputs (CER/WER per language, LID/GID accuracy, TTS SECS) into RESULTS.md."""
    from polyspeech_cli.score.report import score_dirs

    out = out or Path(decode_dirs[0]).resolve().parent / "RESULTS.md"
    scores = score_dirs(decode_dirs, out)
    for name, s in scores.items():
        if s["task"] == "asr":
            console.print(f"{name}: CER {100 * s['cer']['all']:.1f}%  WER {100 * s['wer']['all']:.1f}%")
        elif s["task"] == "tts":
            console.print(f"{name}: SECS {s['secs']:.3f} (different speakers: {s['secs_between_speakers']:.3f})")
        else:
            console.print(f"{name}: accuracy {100 * s['accuracy']:.1f}%")
    console.print(f"wrote {out}")
