"""Writing manifests under Lhotse's naming convention, atomically, and summarising them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSet
from rich.table import Table

from polyspeech_cli.fileio import atomic_path

KINDS = ("recordings", "supervisions", "cuts")


def manifest_path(data_dir: Path, corpus: str, kind: str, split: str) -> Path:
    """`<data_dir>/<corpus>_<kind>_<split>.jsonl.gz` (Lhotse's recipe naming)."""
    return Path(data_dir) / f"{corpus}_{kind}_{split}.jsonl.gz"


def write_split(data_dir: Path, corpus: str, split: str, recordings: RecordingSet, supervisions: SupervisionSet) -> CutSet:
    """Write recordings, supervisions and cuts of one split; each file appears whole or not at all."""
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions).trim_to_supervisions(keep_overlapping=False)
    for kind, manifest in zip(KINDS, (recordings, supervisions, cuts)):
        with atomic_path(manifest_path(data_dir, corpus, kind, split)) as tmp:
            manifest.to_file(tmp)
    return cuts


def summary_table(title: str, splits: dict[str, SupervisionSet]) -> Table:
    """Utterances and hours per split, language and gender."""
    table = Table(title=title)
    for col in ("split", "language", "gender", "utts", "hours"):
        table.add_column(col, justify="right" if col in ("utts", "hours") else "left")
    for split, sups in splits.items():
        groups: dict[tuple[str, str], list[float]] = defaultdict(list)
        for s in sups:
            groups[(s.language or "?", s.gender or "?")].append(s.duration)
        for (lang, gender), durations in sorted(groups.items()):
            table.add_row(split, lang, gender, str(len(durations)), f"{sum(durations) / 3600:.3f}")
        total = [s.duration for s in sups]
        table.add_row(f"[bold]{split}[/]", "all", "all", f"[bold]{len(total)}[/]", f"[bold]{sum(total) / 3600:.3f}[/]", end_section=True)
    return table
