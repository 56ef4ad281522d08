"""The "bring your own data" format: a folder with `manifest.tsv` and audio files.

Columns (tab-separated, header row): `utt_id path speaker gender language duration text`; `path` is
relative to the folder, `gender` is M/F/empty, `language` ISO 639-1, `text` may be empty. Every row has
exactly as many fields as the header (an empty field is still there, between its tabs); a shorter or
longer row is a bad item naming its line.
"""

from __future__ import annotations

from pathlib import Path

from lhotse import RecordingSet, SupervisionSegment, SupervisionSet

from polyspeech_cli.data.sources import UNSPLIT, Manifests
from polyspeech_cli.data.text import read_text_lines
from polyspeech_cli.data.validate import (
    BadItems,
    gender_label,
    language_code,
    positive_duration,
    probe_recording,
)
from polyspeech_cli.errors import (
    BadItemError,
    PolyspeechError,
    require_dir,
    require_file,
)

COLUMNS = ("utt_id", "path", "speaker", "gender", "language", "duration", "text")


def tsv_input_files(corpus_dir: Path) -> list[Path]:
    """What `prepare` stamps as its inputs: the manifest.tsv (the audio files it lists are not stamped)."""
    return [Path(corpus_dir) / "manifest.tsv"]


def prepare_tsv(corpus_dir: Path, bad: BadItems, audio_check: str = "full") -> Manifests:
    """Read `corpus_dir/manifest.tsv` into unsplit Lhotse manifests, validating every row."""
    corpus_dir = require_dir(Path(corpus_dir), "corpus directory", "pass the folder that holds manifest.tsv")
    tsv = require_file(corpus_dir / "manifest.tsv", "manifest", f"write a manifest.tsv with columns {' '.join(COLUMNS)}")
    lines = read_text_lines(tsv, bad)
    header = next(lines, (1, ""))[1].split("\t")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise PolyspeechError(f"{tsv}: header lacks column(s) {', '.join(missing)} (expected: {' '.join(COLUMNS)})")
    col = {name: header.index(name) for name in COLUMNS}
    recordings, supervisions, seen = [], [], set()
    for lineno, line in lines:
        if not line.strip():
            continue
        item = bad.guard(_parse_row, tsv, lineno, line.split("\t"), header, col, corpus_dir, seen, audio_check)
        if item is not None:
            recordings.append(item[0])
            supervisions.append(item[1])
    if not recordings:
        raise PolyspeechError(f"{tsv}: no usable utterances (the manifest is empty or every row was bad)")
    return {UNSPLIT: (RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions))}


def _parse_row(tsv: Path, lineno: int, fields: list[str], header: list[str], col: dict[str, int], root: Path, seen: set[str],
               audio_check: str):
    where = f"{tsv}:{lineno}"
    if len(fields) < len(header):  # not read as empty: a missing text (or gender) column would silently become ""
        missing = " ".join(header[len(fields):])
        raise BadItemError(f"{where}: {len(fields)} tab-separated fields, the header has {len(header)} (no field for: {missing}); "
                           "give every column, an empty one as an empty field between tabs (an empty text is a trailing tab), "
                           "or pass --skip-bad to drop the row")
    if len(fields) > len(header):
        raise BadItemError(f"{where}: {len(fields)} tab-separated fields, the header has {len(header)}; "
                           "a field holds a tab (replace it by a space) or the row has extra columns (remove them), or pass --skip-bad to drop the row")
    get = {name: fields[i].strip() for name, i in col.items()}
    utt_id = get["utt_id"]
    if not utt_id:
        raise BadItemError(f"{where}: empty utt_id")
    if utt_id in seen:
        raise BadItemError(f"{where}: duplicate utt_id '{utt_id}' (utterance ids must be unique)")
    seen.add(utt_id)
    positive_duration(get["duration"], where)
    language = language_code(get["language"], where)
    gender = gender_label(get["gender"], where)
    recording = probe_recording(root / get["path"], utt_id, decode=audio_check == "full")
    supervision = SupervisionSegment(
        id=utt_id,
        recording_id=utt_id,
        start=0.0,
        duration=recording.duration,
        channel=0,
        text=get["text"],
        language=language,
        speaker=get["speaker"] or utt_id,
        gender=gender,
    )
    return recording, supervision
