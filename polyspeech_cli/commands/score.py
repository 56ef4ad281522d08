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


@cli_command
def compare(
    systems: Annotated[list[str], typer.Argument(help="LABEL=path/to/scores.json, e.g. single-task=exp/single/scores.json multitask=exp/lm_multi/scores.json")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Markdown file to write the table to.")] = Path("RESULTS.md"),
    title: Annotated[str, typer.Option("--title", help="Heading above the table.")] = "Single-task vs multitask",
) -> None:
    """The paper's table: ASR CER, TTS SECS, TTS CER, LID and GID accuracy, one column per system."""
    from polyspeech_cli.errors import PolyspeechError
    from polyspeech_cli.fileio import atomic_write_text
    from polyspeech_cli.score.compare import compare_table
    from polyspeech_cli.score.report import environment

    pairs = [s.partition("=") for s in systems]
    if any(not label or not path for label, _, path in pairs):
        raise PolyspeechError("each system is LABEL=path/to/scores.json (e.g. multitask=exp/lm_multi/scores.json)")
    table = compare_table({label: Path(path) for label, _, path in pairs})
    atomic_write_text(out, f"# RESULTS\n\n## Environment\n\n{environment()}\n## {title}\n\n{table}")
    console.print(table)
    console.print(f"wrote {out}")
