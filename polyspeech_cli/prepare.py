"""Stage `prepare`: any corpus source → validated, normalised, split Lhotse manifests.

Every source (the generated `synth` corpus, `tsv`, `kaldi`, Lhotse's recipes) returns manifests
per split; this module does what is common: the bad-item policy, text normalisation, resampling,
splitting, atomic writing, the summary table and the `.done` marker that makes re-runs free.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lhotse import RecordingSet, SupervisionSet
from lhotse.qa import fix_manifests

from polyspeech_cli.console import console
from polyspeech_cli.data.manifests import KINDS, manifest_path, summary_table, write_split
from polyspeech_cli.data.sources import UNSPLIT, Manifests
from polyspeech_cli.data.split import split_manifests
from polyspeech_cli.data.text import normalize_text
from polyspeech_cli.data.validate import BadItems
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_write_text


@dataclass
class PrepareOptions:
    """Options common to every source of `polyspeech prepare`."""

    data_dir: Path
    corpus: str
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    sample_rate: int = 16000  # 0 keeps each file's own rate
    text_norm: str = "asr"
    skip_bad: bool = False
    seed: int = 0
    min_speakers: int = 6  # fewer speakers than this: the split is by utterance, not by speaker
    audio_check: str = "full"
    force: bool = False


def done_marker(opts: PrepareOptions) -> Path:
    """The file whose content says with which options a corpus was prepared."""
    return opts.data_dir / f".{opts.corpus}.prepare.done"


def _fingerprint(opts: PrepareOptions, source: dict) -> str:
    common = {k: str(v) for k, v in dataclasses.asdict(opts).items() if k not in ("force", "skip_bad")}
    return json.dumps({"common": common, "source": {k: str(v) for k, v in source.items()}}, sort_keys=True, indent=1)


def already_prepared(opts: PrepareOptions, source: dict) -> bool:
    """True when the marker matches these options and every manifest it lists still exists."""
    marker = done_marker(opts)
    if opts.force or not marker.is_file():
        return False
    saved = json.loads(marker.read_text(encoding="utf-8"))
    files = [Path(p) for p in saved.get("files", [])]
    return saved.get("fingerprint") == _fingerprint(opts, source) and bool(files) and all(p.is_file() for p in files)


def _normalise(recordings: RecordingSet, supervisions: SupervisionSet, opts: PrepareOptions) -> tuple[RecordingSet, SupervisionSet]:
    recordings, supervisions = fix_manifests(recordings, supervisions)
    if opts.sample_rate:
        recordings = RecordingSet.from_recordings(
            r.resample(opts.sample_rate) if r.sampling_rate != opts.sample_rate else r for r in recordings
        )
    if opts.text_norm != "none":
        supervisions = SupervisionSet.from_segments(
            dataclasses.replace(s, text=normalize_text(s.text or "", opts.text_norm)) for s in supervisions
        )
    return recordings, supervisions


def run_prepare(source_name: str, load: Callable[[BadItems], Manifests], opts: PrepareOptions, source_args: dict) -> Manifests | None:
    """Load a corpus with `load`, then normalise, split, write and summarise it.

    Returns the written manifests per split, or None when the corpus was already prepared with the
    same options (nothing is done then).
    """
    if already_prepared(opts, source_args):
        console.print(f"[green]{opts.corpus}[/]: already prepared in {opts.data_dir} with these options; nothing to do (--force redoes it).")
        return None
    bad = BadItems(skip=opts.skip_bad)
    loaded = load(bad)
    splits: Manifests = {}
    for part, (recordings, supervisions) in loaded.items():
        recordings, supervisions = _normalise(recordings, supervisions, opts)
        if part != UNSPLIT:
            splits[part] = (recordings, supervisions)
            continue
        split, disjoint = split_manifests(recordings, supervisions, opts.split_ratios, opts.seed, opts.min_speakers)
        if opts.split_ratios[0] < 1 and not disjoint:
            n = len({s.speaker for s in supervisions})
            console.print(f"[yellow]note:[/] {opts.corpus} has {n} speaker(s) (< --min-speakers {opts.min_speakers}): dev/test are split by utterance, not by speaker.")
        splits.update(split)
    splits = {k: v for k, v in splits.items() if len(v[1])}
    if not splits:
        raise PolyspeechError(f"{source_name}: no utterances left to write (every item was bad or filtered)")

    written = []
    for split, (recordings, supervisions) in splits.items():
        write_split(opts.data_dir, opts.corpus, split, recordings, supervisions)
        written += [str(manifest_path(opts.data_dir, opts.corpus, kind, split)) for kind in KINDS]
    console.print(summary_table(f"{opts.corpus} → {opts.data_dir}", {k: v[1] for k, v in splits.items()}))
    if bad.dropped:
        console.print(f"[yellow]--skip-bad dropped {len(bad.dropped)} bad item(s)[/]; the first: {bad.dropped[0]}")
    atomic_write_text(done_marker(opts), json.dumps({"fingerprint": _fingerprint(opts, source_args), "files": written, "dropped": bad.dropped}, indent=1))
    return splits
