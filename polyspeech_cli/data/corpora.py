"""Real corpora on the user's disk, prepared by Lhotse's own recipes and relabelled to our schema.

Lhotse gives recordings and supervisions; we add what our tasks need on every supervision:
an ISO 639-1 `language` and a `gender` (M/F) where the corpus documents it. Nothing is downloaded
unless the user passes `--download`.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

from lhotse import RecordingSet, SupervisionSet
from lhotse.recipes import (
    download_aishell,
    download_librispeech,
    prepare_aishell,
    prepare_commonvoice,
    prepare_librispeech,
)
from lhotse.recipes.commonvoice import (
    download_commonvoice,  # not re-exported by lhotse.recipes
)

from polyspeech_cli.data.sources import Manifests
from polyspeech_cli.data.text import read_text_lines
from polyspeech_cli.data.validate import BadItems, language_code, probe_recording
from polyspeech_cli.errors import PolyspeechError

CORPORA = ("librispeech", "aishell", "commonvoice")


def _relabel(
    parts: dict[str, dict], language: Callable[[str], str], gender: Callable[[str, str | None], str | None], bad: BadItems
) -> Manifests:
    """Convert a Lhotse recipe's {part: {recordings, supervisions}} to ours, fixing language/gender."""
    out: Manifests = {}
    for part, m in parts.items():
        sups = []
        for s in m["supervisions"]:
            lang = bad.guard(language, s.language or "")
            if lang is None:
                continue
            sups.append(dataclasses.replace(s, language=lang, gender=gender(s.speaker, s.gender)))
        ids = {s.recording_id for s in sups}
        out[part] = (RecordingSet.from_recordings(r for r in m["recordings"] if r.id in ids), SupervisionSet.from_segments(sups))
    return out


def _gender_table(path: Path, bad: BadItems, sep: str, id_col: int, sex_col: int) -> dict[str, str]:
    """Speaker → M/F from a corpus speaker table (LibriSpeech SPEAKERS.TXT, AISHELL speaker.info)."""
    table: dict[str, str] = {}
    if not path.is_file():
        return table
    for _, line in read_text_lines(path, bad):
        if not line.strip() or line.startswith(";"):
            continue
        fields = [f.strip() for f in (line.split(sep) if sep else line.split())]
        if len(fields) > max(id_col, sex_col) and fields[sex_col].upper() in ("M", "F"):
            table[fields[id_col]] = fields[sex_col].upper()
    return table


def prepare_librispeech_corpus(corpus_dir: Path, bad: BadItems, download: bool = False, parts: str = "auto") -> Manifests:
    """LibriSpeech (`corpus_dir` holds `LibriSpeech/` or is it); gender from SPEAKERS.TXT.
    `parts`: auto (every part found), one part or a comma-separated list (Lhotse takes a list)."""
    part_list = [p.strip() for p in parts.split(",") if p.strip()] if "," in parts else parts
    if download:
        corpus_dir = download_librispeech(corpus_dir, dataset_parts="mini_librispeech" if parts == "auto" else part_list)
    root = corpus_dir / "LibriSpeech" if (corpus_dir / "LibriSpeech").is_dir() else corpus_dir
    genders = _gender_table(root / "SPEAKERS.TXT", bad, sep="|", id_col=0, sex_col=1)
    manifests = prepare_librispeech(root, dataset_parts=part_list)
    return _relabel(manifests, lambda _: "en", lambda spk, g: genders.get(spk), bad)


def prepare_aishell_corpus(corpus_dir: Path, bad: BadItems, download: bool = False) -> Manifests:
    """AISHELL-1 (`corpus_dir` holds `data_aishell/`); gender from resource_aishell/speaker.info."""
    if download:
        download_aishell(corpus_dir)
    genders = _gender_table(corpus_dir / "resource_aishell" / "speaker.info", bad, sep="", id_col=0, sex_col=1)
    manifests = prepare_aishell(corpus_dir)
    # speaker.info uses "0002" where the audio folders say "S0002".
    return _relabel(manifests, lambda _: "zh", lambda spk, g: genders.get(spk.lstrip("S")) or genders.get(spk), bad)


def _commonvoice_language(code: str) -> str:
    return language_code(code.split("-")[0], f"Common Voice language '{code}'")


def _commonvoice_gender(_: str, gender: str | None) -> str | None:
    # Common Voice writes male / female, or male_masculine / female_feminine in newer releases.
    g = (gender or "").lower()
    return "F" if g.startswith("female") else "M" if g.startswith("male") else None


def prepare_commonvoice_corpus(corpus_dir: Path, bad: BadItems, download: bool = False, languages: str = "auto") -> Manifests:
    """Common Voice (`corpus_dir/<lang>/{train,dev,test}.tsv` + clips); splits named `<lang>_<split>`."""
    langs = "auto" if languages == "auto" else languages.split(",")
    if download:
        download_commonvoice(corpus_dir, languages="all" if langs == "auto" else langs)
    with tempfile.TemporaryDirectory() as lhotse_out:  # the recipe insists on writing its own copies
        manifests = prepare_commonvoice(corpus_dir, output_dir=lhotse_out, languages=langs)
    flat = {f"{lang}_{split}": m for lang, splits in manifests.items() for split, m in splits.items()}
    return _relabel(flat, _commonvoice_language, _commonvoice_gender, bad)


def corpus_input_files(name: str, corpus_dir: Path) -> list[Path]:
    """The small index files of a Lhotse corpus that `prepare` stamps as its inputs (those present)."""
    corpus_dir = Path(corpus_dir)
    if name == "librispeech":
        return [corpus_dir / "LibriSpeech" / "SPEAKERS.TXT", corpus_dir / "SPEAKERS.TXT"]
    if name == "aishell":
        return [corpus_dir / "resource_aishell" / "speaker.info", *sorted((corpus_dir / "data_aishell" / "transcript").glob("*.txt"))]
    if name == "commonvoice":
        return sorted(corpus_dir.glob("*/*.tsv"))
    return []


def prepare_lhotse_corpus(name: str, corpus_dir: Path, bad: BadItems, download: bool, subset: str, audio_check: str) -> Manifests:
    """Run the named Lhotse recipe and validate its audio like every other source."""
    corpus_dir = Path(corpus_dir)
    if not download and not corpus_dir.is_dir():
        raise PolyspeechError(f"corpus directory not found: {corpus_dir} (pass the folder where {name} is unpacked, or add --download)")
    try:
        if name == "librispeech":
            manifests = prepare_librispeech_corpus(corpus_dir, bad, download, subset)
        elif name == "aishell":
            manifests = prepare_aishell_corpus(corpus_dir, bad, download)
        elif name == "commonvoice":
            manifests = prepare_commonvoice_corpus(corpus_dir, bad, download, subset)
        else:
            raise PolyspeechError(f"unknown corpus '{name}' (choose one of {', '.join(CORPORA)})")
    except (AssertionError, FileNotFoundError) as e:
        raise PolyspeechError(f"{corpus_dir}: does not look like {name} ({e}); check the folder layout in README.md") from None
    manifests = {part: m for part, m in manifests.items() if len(m[1])}
    if not manifests:
        raise PolyspeechError(f"{corpus_dir}: Lhotse's {name} recipe found no utterances; check the folder layout in README.md")
    return {part: (check_recordings(recs, bad, audio_check), sups) for part, (recs, sups) in manifests.items()}


def check_recordings(recordings: RecordingSet, bad: BadItems, audio_check: str) -> RecordingSet:
    """Decode every recording (`full`) so that corrupt files fail here, not in the middle of training."""
    if audio_check != "full":
        return recordings

    def check(r):
        path = Path(r.sources[0].source)
        probe_recording(path, r.id, decode=True)
        return r

    return RecordingSet.from_recordings(r for r in (bad.guard(check, r) for r in recordings) if r is not None)
