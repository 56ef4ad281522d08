"""The `extract-tokens` driver: read cuts, check them, run an extractor, write storage + manifest.

Outputs for `<out_dir>/<name>.jsonl.gz` appear whole or not at all: arrays are written to a
temporary storage path that is renamed into place just before the manifest (itself atomic), and
everything partial is removed on error. Each output has a stamp (polyspeech_cli.stamps,
`<out_dir>/.<name>.extract.json`) whose key is the extractor's fingerprint and the identity of the
input manifest and of the model files (codec checkpoint, k-means centroids); with the same key the
output is skipped. `<out_dir>/<type>.json` describes the representation for the LM (not a stamp).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lhotse import CutSet
from lhotse.cut import Cut

from polyspeech_cli.console import console, make_progress
from polyspeech_cli.data.manifest import read_cuts
from polyspeech_cli.errors import BadItemError, PolyspeechError
from polyspeech_cli.fileio import atomic_path, atomic_write_text
from polyspeech_cli.stamps import (
    changed_keys,
    is_fresh,
    jsonable,
    read_stamp,
    stamp_key,
    write_stamp,
)
from polyspeech_cli.tokens.base import Extractor

TYPES = ("fbank", "hubert", "encodec", "kmeans", "sset")
WINDOW_CUTS = 2048  # cuts read (and sorted by length) at a time


@dataclass
class ExtractOptions:
    type: str
    out_dir: Path
    model: str | None = None  # hubert: local dir or hub id
    layer: int = 9  # hubert layer (0 = CNN output)
    checkpoint: Path | None = None  # encodec state dict / sset codec checkpoint
    bandwidth: float = 6.0  # encodec kbps
    k: int = 2048  # kmeans clusters
    centroids: Path | None = None  # kmeans: default <out_dir>/kmeans_centroids.safetensors
    num_codebooks: int | None = None  # sset: keep the first n books (default all)
    num_mel_bins: int = 80
    batch_size: int = 8
    device: str = "auto"
    skip_bad: bool = False  # drop cuts whose computed features are not finite (counted) instead of stopping


def make_extractor(opts: ExtractOptions) -> Extractor:
    """Build (and load the model of) the extractor for opts.type; bad options fail here, before any I/O."""
    if opts.type == "fbank":
        from polyspeech_cli.tokens.fbank import FbankExtractor

        return FbankExtractor(opts.num_mel_bins)
    if opts.type == "hubert":
        from polyspeech_cli.tokens.hubert import HubertExtractor

        if not opts.model:
            raise PolyspeechError(
                "--type hubert needs --model (a local HuBERT dir or a cached hub id such as facebook/hubert-base-ls960 or "
                "TencentGameMate/chinese-hubert-base); without one, the offline default semantic stream is --type fbank"
            )
        return HubertExtractor(opts.model, opts.layer, opts.batch_size, opts.device)
    if opts.type == "encodec":
        from polyspeech_cli.tokens.encodec_tokens import EncodecExtractor

        return EncodecExtractor(opts.checkpoint, opts.bandwidth, opts.device)
    if opts.type == "kmeans":
        from polyspeech_cli.tokens.kmeans_tokens import KMeansExtractor

        return KMeansExtractor(opts.centroids or Path(opts.out_dir) / "kmeans_centroids.safetensors", opts.k)
    if opts.type == "sset":
        from polyspeech_cli.tokens.sset_tokens import SSETExtractor

        if opts.checkpoint is None:
            raise PolyspeechError("--type sset needs --checkpoint exp/codec/model.safetensors (train one with `polyspeech train codec`)")
        return SSETExtractor(opts.checkpoint, opts.num_codebooks, opts.device)
    raise PolyspeechError(f"unknown --type '{opts.type}' (choose one of {', '.join(TYPES)})")


def manifest_stem(path: Path) -> str:
    return path.name.split(".")[0]


def stamp_path(out: Path) -> Path:
    """The stamp (polyspeech_cli.stamps) of one output manifest: `<out_dir>/.<stem>.extract.json`."""
    return out.parent / f".{manifest_stem(out)}.extract.json"


def model_files(opts: ExtractOptions, ext: Extractor) -> list[Path]:
    """Files the output depends on besides the input manifest: the SSET codec / EnCodec checkpoint,
    the k-means centroids (fitted by `ext.prepare` when missing)."""
    if opts.type == "kmeans":
        return [Path(ext.path)]  # type: ignore[attr-defined]
    if opts.type == "sset" and opts.checkpoint is not None:
        from polyspeech_cli.codec.checkpoint import model_path

        return [model_path(opts.checkpoint)]  # the model file, also when --checkpoint is the exp dir
    if opts.type == "encodec" and opts.checkpoint is not None:
        return [Path(opts.checkpoint)]
    return []


def extract_key(in_path: Path, ext: Extractor, files: list[Path]) -> dict[str, Any]:
    """Extractor fingerprint (type, settings, model) + identity of the input manifest and model files."""
    return stamp_key({"type": ext.name, "fingerprint": ext.fingerprint()}, [in_path, *(f for f in files if f.exists())])


def check_inputs(cuts: CutSet, ext: Extractor, where: str) -> None:
    """Every cut has what the extractor reads (checked up front, so nothing is half-written)."""
    for cut in cuts:
        if ext.needs == "audio" and not cut.has_recording:
            raise PolyspeechError(f"{where}cut '{cut.id}' has no audio (recording); --type {ext.name} reads audio")
        if ext.needs == "features" and not cut.has_features:
            raise PolyspeechError(
                f"{where}cut '{cut.id}' has no features; --type {ext.name} reads continuous features: run "
                "`polyspeech extract-tokens --type fbank` (or hubert) first and pass the manifest it writes"
            )


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def extract_manifest(in_path: Path, ext: Extractor, out_dir: Path, first: bool, files: list[Path] | None = None,
                     skip_bad: bool = False) -> Path:
    """Run `ext` over one cuts manifest; returns the output manifest path. `files`: the model files
    the output depends on (see `model_files`), part of the stamp key. The input is streamed (a lazy
    CutSet, `WINDOW_CUTS` at a time); a cut whose computed values are not finite is a one-line
    error naming it, or, with `skip_bad`, dropped and counted."""
    where = f"{in_path}: "
    cuts = read_cuts(in_path)
    out = out_dir / in_path.name
    if out.resolve() == in_path.resolve():
        raise PolyspeechError(f"{in_path}: --out-dir would overwrite the input manifest; choose another --out-dir")
    if first:
        ext.prepare(cuts, where)
    stamp, key = stamp_path(out), extract_key(in_path, ext, files or [])
    if skip_bad:  # may drop cuts: another output (left out when off, so older stamps still match)
        key["options"]["skip_bad"] = True
    if is_fresh(stamp, key):
        console.print(f"[green]{out}: already extracted ({len(cuts)} cuts, --type {ext.name}) from this input with these settings; nothing to do[/]")
        return out
    old = read_stamp(stamp)
    if old is not None:
        changed = [c.split(":")[0] for c in changed_keys(old.get("key", {}), jsonable(key))]
        why = f"changed: {', '.join(changed[:4])}" if changed else "an output is missing"
        console.print(f"[yellow]{out}: stale ({why}); extracting again[/]")
    elif out.is_file():
        console.print(f"[yellow]{out}: exists without a finished-work stamp; extracting again[/]")
    check_inputs(cuts, ext, where)

    stem = manifest_stem(in_path)
    suffix = ".lca" if ext.writer.name == "lilcom_chunky" else ""
    # storage sits directly in out_dir, so `<type>.json` is found at storage_path's parent
    final_storage = out_dir / f"{stem}_{ext.name}{suffix}"
    tmp_storage = out_dir / f"tmp{os.getpid()}-{stem}_{ext.name}{suffix}"
    out_dir.mkdir(parents=True, exist_ok=True)
    num_cuts, bad = 0, []
    try:
        # The input is streamed in windows of WINDOW_CUTS cuts; within one, long cuts go together
        # (fewer padded frames in batched models); the output keeps the input's order, and each
        # cut is written to the (temporary) manifest as soon as its window is done.
        with atomic_path(out) as tmp_manifest:
            with CutSet.open_writer(tmp_manifest) as manifest, ext.writer(tmp_storage) as writer, make_progress() as progress:
                task = progress.add_task(f"{ext.name}: {in_path.name}", total=len(cuts))
                for window in _windows(cuts):
                    order = sorted(range(len(window)), key=lambda i: window[i].duration) if ext.batch_size > 1 else list(range(len(window)))
                    done: list[Cut | None] = [None] * len(window)
                    for s in range(0, len(order), ext.batch_size):
                        idx = order[s : s + ext.batch_size]
                        batch = [window[i] for i in idx]
                        try:
                            arrays = ext.process(batch)
                        except PolyspeechError as e:
                            raise PolyspeechError(f"{where}{e}") from e
                        for i, cut, arr in zip(idx, batch, arrays):
                            try:
                                check_finite(cut, arr, ext, where)
                            except BadItemError as e:
                                if not skip_bad:
                                    raise
                                bad.append(str(e))
                                continue
                            done[i] = ext.attach(cut, arr, writer)
                        progress.advance(task, len(batch))
                    for c in done:
                        if c is not None:  # pointed at the final storage name: it is moved there below
                            manifest.write(_repoint(c, ext, str(writer.storage_path), str(final_storage)))
                            num_cuts += 1
                tmp_written = Path(writer.storage_path)
            if not num_cuts:
                raise PolyspeechError(f"{where}every cut has non-finite features ({len(bad)} dropped by --skip-bad); the first: {bad[0]}")
            stamp.unlink(missing_ok=True)  # the old output is being replaced: not done until the new stamp
            _remove(final_storage)
            os.replace(tmp_written, final_storage)
    finally:
        _remove(tmp_storage)
    if bad:
        console.print(f"[yellow]--skip-bad dropped {len(bad)} cut(s) with non-finite features[/]; the first: {bad[0]}")
    info_path = out_dir / f"{ext.name}.json"  # what decoding reads: vocabulary / dimension / frame shift
    atomic_write_text(info_path, json.dumps(jsonable(ext.info()), indent=2) + "\n")
    write_stamp(stamp, key, [out, final_storage, info_path], input=str(in_path), num_cuts=num_cuts)
    console.print(f"wrote {out} ({num_cuts} cuts, --type {ext.name}) and {out_dir / (ext.name + '.json')}")
    return out


def _windows(cuts: CutSet, size: int = WINDOW_CUTS):
    it = iter(cuts)
    while window := list(itertools.islice(it, size)):
        yield window


def check_finite(cut: Cut, arr: np.ndarray, ext: Extractor, where: str = "") -> None:
    """Computed features (or float tokens) with NaN/inf are refused here, where they are made: a
    one-line BadItemError naming the cut (`--skip-bad` drops it instead)."""
    arr = np.asarray(arr)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        n = int(arr.size - np.isfinite(arr).sum())
        raise BadItemError(f"{where}cut '{cut.id}': --type {ext.name} computed {n} NaN/inf value(s) of {arr.size} "
                           "(check its audio: silence, clipping, a broken file), or pass --skip-bad to drop such cuts")


def _repoint(cut: Cut, ext: Extractor, old: str, new: str) -> Cut:
    from lhotse.utils import fastcopy

    if ext.kind == "features":
        assert cut.features is not None and cut.features.storage_path == old
        return fastcopy(cut, features=fastcopy(cut.features, storage_path=new))
    arr = cut.custom[ext.name]
    arr = fastcopy(arr, array=fastcopy(arr.array, storage_path=new))
    return fastcopy(cut, custom={**cut.custom, ext.name: arr})


def extract(inputs: list[Path], opts: ExtractOptions) -> list[Path]:
    """Extract opts.type for every input manifest (k-means fits on the first one)."""
    if not inputs:
        raise PolyspeechError("no input cuts manifest given")
    out_dir = Path(opts.out_dir)
    ext = make_extractor(opts)
    if opts.type == "fbank":
        console.print("[dim]fbank: 80-dim log-mel; this is also the offline default semantic stream when no HuBERT checkpoint is on disk[/]")
    return [extract_manifest(Path(p), ext, out_dir, first=i == 0, files=model_files(opts, ext), skip_bad=opts.skip_bad)
            for i, p in enumerate(inputs)]
