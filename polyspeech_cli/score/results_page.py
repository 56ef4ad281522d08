"""RESULTS.md of a recipe: the single-task vs multitask table and everything around it.

`polyspeech compare` is a thin wrapper over `write_results_page`; a recipe whose page needs more
(per-source tables, a peer system) calls the same function or passes the same options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError, require_file
from polyspeech_cli.fileio import atomic_write_text
from polyspeech_cli.lm.summary import budget_table, plot_curves
from polyspeech_cli.score.classify import plot_confusions
from polyspeech_cli.score.compare import compare_table, confusion_panels, load_bars, load_systems, metrics, quality_bars, tts_asr_metrics
from polyspeech_cli.score.report import environment
from polyspeech_cli.score.waterfall import waterfall_rows, waterfall_table


@dataclass
class ResultsPage:
    """What goes on the page: systems and references are LABEL -> scores.json, `tts_asr` LABEL ->
    the ASR decode of that system's (or reference's) synthesized audio."""

    systems: dict[str, Path]
    out: Path = Path("RESULTS.md")
    title: str = "Single-task vs multitask"
    references: dict[str, Path] = field(default_factory=dict)
    tts_asr: dict[str, Path] = field(default_factory=dict)
    tts_judge: str | None = None  # the system whose ASR model made the tts_asr decodes
    bars: Path | None = None  # the recipe's quality bars (YAML)
    lm_dirs: list[Path] = field(default_factory=list)  # training budgets and curves
    budget_rule: str | None = None  # a sentence under the budget table
    notes: Path | None = None  # markdown appended at the end
    # The TTS back end's loss waterfall: row label -> the judge's ASR decode of that row's audio
    # (the first row: the real audio), in order (`score/waterfall.py`)
    waterfall: dict[str, Path] = field(default_factory=dict)


def write_results_page(page: ResultsPage) -> str:
    """Write `page.out` (PNGs beside it) atomically; returns the main table (markdown)."""
    unknown = sorted(set(page.tts_asr) - set(page.systems) - set(page.references))
    if unknown:
        raise PolyspeechError(f"--tts-asr {unknown[0]}=...: no system or --reference is labelled '{unknown[0]}' "
                              f"(labels: {', '.join([*page.systems, *page.references])})")
    quality = load_bars(page.bars) if page.bars else None
    references = {label: metrics(s, str(page.references[label])) for label, s in load_systems(page.references).items()}
    notes_text = require_file(page.notes, "notes file", "fix --notes").read_text(encoding="utf-8") if page.notes else ""
    scores = load_systems(page.systems)
    columns = {label: metrics(s, str(page.systems[label])) for label, s in scores.items()}
    for label, path in page.tts_asr.items():
        (columns if label in columns else references)[label].update(tts_asr_metrics(path))
    table = compare_table(columns)
    if page.tts_judge is not None:
        if "ASR CER %" not in columns.get(page.tts_judge, {}):
            raise PolyspeechError(f"--tts-judge {page.tts_judge}: no system with an ASR result is labelled so (labels: {', '.join(columns)})")
        table += (f"\nTTS CER % is the CER of the {page.tts_judge} system's ASR model (chosen on dev) on the synthesized audio; "
                  f"its CER on the real test audio is {columns[page.tts_judge]['ASR CER %']:.1f}%.\n")
    out = Path(page.out)
    parts = [f"# RESULTS\n\n## Environment\n\n{environment()}\n## {page.title}\n\n{table}"]
    if page.lm_dirs:
        png = out.with_name(out.stem + "_curves.png")
        plot_curves(page.lm_dirs, png)
        parts.append(f"\n![training curves]({png.name})\n")
    panels = confusion_panels(scores)
    if panels:
        png = out.with_name(out.stem + "_confusion.png")
        plot_confusions(panels, png)
        parts.append(f"\n![LID and GID confusion matrices]({png.name})\n")
    for label, ref in references.items():
        parts.append(f"\n## Reference: {label}\n\n{compare_table({label: ref}, only_present=True)}")
    if page.waterfall:
        parts.append("\n## TTS back end: where the words are lost\n\n" + waterfall_table(waterfall_rows(page.waterfall))
                     + "\nOne judge (the TTS CER's) transcribes every row; SECS against the real recording of the target "
                       "speaker, MCD (DTW) against the real utterance.\n")
    if quality is not None:
        parts.append(f"\n## Quality bars\n\n{quality_bars(columns, quality)}")
    if page.lm_dirs:
        parts.append(f"\n## Training budgets\n\n{budget_table(page.lm_dirs)}" + (f"\n{page.budget_rule}\n" if page.budget_rule else ""))
    if notes_text:
        parts.append("\n" + notes_text)
    atomic_write_text(out, "".join(parts))
    return table
