"""Stage `prepare`: any corpus source → validated, normalised, split Lhotse manifests.

Every source (the generated `synth` corpus, `tsv`, `kaldi`, Lhotse's recipes) returns manifests
per split; this module does what is common: the bad-item policy, text normalisation, resampling,
splitting, atomic writing, the summary table and the stamp (polyspeech_cli.stamps) that makes re-runs free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lhotse import RecordingSet, SupervisionSet
from lhotse.qa import fix_manifests

from polyspeech_cli.console import console
from polyspeech_cli.data.manifests import (
    KINDS,
    manifest_path,
    summary_table,
    write_split,
)
from polyspeech_cli.data.sources import UNSPLIT, Manifests
from polyspeech_cli.data.split import nonzero_splits, split_manifests
from polyspeech_cli.data.text import normalize_text
from polyspeech_cli.data.validate import BadItems
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.stamps import (
    changed_keys,
    is_fresh,
    jsonable,
    read_stamp,
    stamp_key,
    write_stamp,
)


@dataclass
class PrepareOptions:
    """Options common to every source of `polyspeech prepare`."""

    data_dir: Path
    corpus: str
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train may be 0: (0, 0, 1) is a test-only set
    sample_rate: int = 16000  # 0 keeps each file's own rate
    text_norm: str = "asr"
    skip_bad: bool = False
    seed: int = 0
    min_speakers: int = 6  # fewer speakers than this: the split is by utterance, not by speaker
    audio_check: str = "full"
    force: bool = False


def stamp_path(opts: PrepareOptions) -> Path:
    """The stamp (polyspeech_cli.stamps) that records with which options and inputs a corpus was prepared."""
    return opts.data_dir / f".{opts.corpus}.prepare.json"


def prepare_key(opts: PrepareOptions, source: dict, inputs: Iterable[Path | str] = ()) -> dict:
    """The stamp key: every option that changes the manifests, the source's arguments, and the identity
    of the source's index files that exist now (a manifest.tsv, a Kaldi dir's files...)."""
    common = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("force", "skip_bad")}
    return stamp_key({"common": common, "source": source}, [p for p in inputs if Path(p).is_file()])


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


def run_prepare(source_name: str, load: Callable[[BadItems], Manifests], opts: PrepareOptions, source_args: dict,
                inputs: Iterable[Path | str] | Callable[[], Iterable[Path | str]] = ()) -> Manifests | None:
    """Load a corpus with `load`, then normalise, split, write and summarise it.

    `inputs` are the source's index files, or a function listing them (missing ones are skipped); with
    the options they make the stamp key. Returns the written manifests per split, or None when the
    stamp says the corpus was already prepared with the same options and inputs (nothing is done then).
    """
    listed = None if callable(inputs) else list(inputs)

    def files() -> list[Path | str]:
        return list(inputs()) if listed is None else listed

    stamp = stamp_path(opts)
    key = prepare_key(opts, source_args, files())
    old = read_stamp(stamp)
    if not opts.force and is_fresh(stamp, key):
        console.print(f"[green]{opts.corpus}[/]: already prepared in {opts.data_dir} with these options and inputs; nothing to do (--force redoes it).")
        return None
    if old is not None and not opts.force:
        changed = [c.split(":")[0] for c in changed_keys(old.get("key", {}), jsonable(key))]
        why = f"changed: {', '.join(changed[:4])}" if changed else "a manifest it wrote is missing"
        console.print(f"[yellow]{opts.corpus}[/]: prepared before in {opts.data_dir}, but {why}; preparing again.")
    bad = BadItems(skip=opts.skip_bad)
    loaded = load(bad)
    splits: Manifests = {}
    for part, (recordings, supervisions) in loaded.items():
        recordings, supervisions = _normalise(recordings, supervisions, opts)
        if part != UNSPLIT:
            splits[part] = (recordings, supervisions)
            continue
        split, disjoint = split_manifests(recordings, supervisions, opts.split_ratios, opts.seed, opts.min_speakers)
        if len(nonzero_splits(opts.split_ratios)) > 1 and not disjoint:
            n = len({s.speaker for s in supervisions})
            console.print(f"[yellow]note:[/] {opts.corpus} has {n} speaker(s) (< --min-speakers {opts.min_speakers}): dev/test are split by utterance, not by speaker.")
        splits.update(split)
    splits = {k: v for k, v in splits.items() if len(v[1])}
    if not splits:
        raise PolyspeechError(f"{source_name}: no utterances left to write (every item was bad or filtered)")

    stamp.unlink(missing_ok=True)  # from here on the old manifests are being replaced: not done until the new stamp
    written = []
    for split, (recordings, supervisions) in splits.items():
        write_split(opts.data_dir, opts.corpus, split, recordings, supervisions)
        written += [str(manifest_path(opts.data_dir, opts.corpus, kind, split)) for kind in KINDS]
    console.print(summary_table(f"{opts.corpus} → {opts.data_dir}", {k: v[1] for k, v in splits.items()}))
    if bad.dropped:
        console.print(f"[yellow]--skip-bad dropped {len(bad.dropped)} bad item(s)[/]; the first: {bad.dropped[0]}")
    # The key again, now that the source has been read: a source that creates its index files while
    # loading (synth, --download) is stamped with what it read, so the next run is a no-op.
    write_stamp(stamp, prepare_key(opts, source_args, files()), written, corpus=opts.corpus, dropped=bad.dropped)
    return splits


def prepare_tsv_corpus(corpus_dir: Path, opts: PrepareOptions) -> Manifests | None:
    """`prepare tsv`: a folder with manifest.tsv ("bring your own data"); see `run_prepare`."""
    from polyspeech_cli.data.tsv import prepare_tsv, tsv_input_files

    root = Path(corpus_dir).resolve()
    return run_prepare("tsv", lambda bad: prepare_tsv(root, bad, opts.audio_check), opts, {"corpus_dir": root}, tsv_input_files(root))
