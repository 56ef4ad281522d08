"""Continuous features of a cut set, checked and normalised: streamed from storage for codec
training (`stream_feature_set`), in memory for dev sets and k-means (`load_feature_set`).

`CutIndex` (over `polyspeech_cli.data.manifest.read_cuts`, the package's one lazy manifest reader)
is the streaming primitive the speech decoder uses too.
"""

from __future__ import annotations

import json
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lhotse.cut import Cut

from polyspeech_cli.data.manifest import read_cuts
from polyspeech_cli.errors import PolyspeechError

NORMALIZATIONS = ("utterance_mvn", "none")


class CutIndex:
    """Random access by position to the cuts of a manifest without holding them in memory.

    One streaming pass checks each cut's metadata (features present, one feature dim, plus
    `check(cut)`) and copies its JSON line to an anonymous temporary file (deleted when the index
    is garbage-collected); the index keeps per cut only a byte offset, the number of feature
    frames and the speaker (a few dozen bytes). `sort=True` orders the cuts by id, else manifest
    order; `max_cuts` > 0 keeps the first that many.
    """

    def __init__(self, path: Path | str, sort: bool = False, max_cuts: int = 0, check: Callable[[Cut], None] | None = None) -> None:
        path = Path(path)
        where = f"{path}: "
        rows: list[tuple[str, int, int, str]] = []  # (cut id, byte offset, frames, speaker)
        self._file = tempfile.TemporaryFile()
        self.dim, self.frame_shift, self.feature_type = 0, 0.0, ""
        for cut in read_cuts(path):
            if not sort and max_cuts and len(rows) >= max_cuts:
                break
            if not cut.has_features:
                load_cut_features(cut, where)  # raises the one-line "has no features" error
            if check is not None:
                check(cut)
            if not self.dim:
                self.dim, self.frame_shift, self.feature_type = int(cut.num_features), float(cut.frame_shift), str(cut.features.type)
            elif cut.num_features != self.dim:
                raise PolyspeechError(f"{where}cut '{cut.id}': feature dim {cut.num_features} differs from the first cut's {self.dim}")
            speaker = cut.supervisions[0].speaker if cut.supervisions and cut.supervisions[0].speaker else cut.id
            rows.append((cut.id, self._file.tell(), int(cut.num_frames), speaker))
            self._file.write(json.dumps(cut.to_dict(), ensure_ascii=False).encode() + b"\n")
        if sort:
            rows.sort()
        rows = rows[: max_cuts or None]
        if not rows:
            raise PolyspeechError(f"{where}no cuts to read features from (the manifest is empty)")
        self.offsets = np.array([r[1] for r in rows], dtype=np.int64)
        self.num_frames = np.array([r[2] for r in rows], dtype=np.int64)
        self.speaker_names = sorted({r[3] for r in rows})
        code = {s: i for i, s in enumerate(self.speaker_names)}
        self.speaker_codes = np.array([code[r[3]] for r in rows], dtype=np.int32)

    def __len__(self) -> int:
        return len(self.offsets)

    def cut(self, i: int) -> Cut:
        from lhotse.serialization import deserialize_item

        self._file.seek(int(self.offsets[i]))
        return deserialize_item(json.loads(self._file.readline()))

    def speakers(self) -> list[str]:
        return [self.speaker_names[c] for c in self.speaker_codes]


class LazySequence(Sequence):
    """`seq[i]` = `load(i)`, loaded from storage on access and kept in a least-recently-used cache
    of at most `cache_bytes` (0: nothing is kept). A training set smaller than the cache is read
    from disk once, as if it were held in memory; a larger one never takes more than the cache."""

    def __init__(self, n: int, load: Callable[[int], object], cache_bytes: int = 0) -> None:
        self.n, self.load, self.cache_bytes = n, load, cache_bytes
        self._cache: OrderedDict[int, tuple[object, int]] = OrderedDict()
        self._cached_bytes = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self._get(int(i) % self.n)

    def __iter__(self) -> Iterator:
        return (self._get(i) for i in range(self.n))

    def _get(self, i: int) -> object:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i][0]
        item = self.load(i)
        size = nbytes(item)
        if 0 < size <= self.cache_bytes:
            self._cache[i] = (item, size)
            self._cached_bytes += size
            while self._cached_bytes > self.cache_bytes:
                _, (_, old) = self._cache.popitem(last=False)
                self._cached_bytes -= old
        return item


def nbytes(item: object) -> int:
    """Bytes of the numpy arrays in `item` (an array, or an object whose fields hold arrays)."""
    if isinstance(item, np.ndarray):
        return item.nbytes
    return sum(v.nbytes for v in vars(item).values() if isinstance(v, np.ndarray)) if hasattr(item, "__dict__") else 0


def load_cut_features(cut: Cut, where: str = "") -> np.ndarray:
    """cut.features as float32 (T, D); a cut without features or with NaN/inf is a user error."""
    if not cut.has_features:
        raise PolyspeechError(
            f"{where}cut '{cut.id}' has no features (run `polyspeech extract-tokens --type fbank` "
            "or `--type hubert` on this manifest first and pass the manifest it writes)"
        )
    try:
        x = np.asarray(cut.load_features(), dtype=np.float32)
    except Exception as e:
        raise PolyspeechError(f"{where}cut '{cut.id}': cannot load its features from {cut.features.storage_path} ({e})") from e
    if x.ndim != 2 or x.shape[0] == 0:
        raise PolyspeechError(f"{where}cut '{cut.id}': features have shape {x.shape}, expected (frames, dim) with frames > 0")
    if not np.isfinite(x).all():
        raise PolyspeechError(f"{where}cut '{cut.id}': features contain NaN/inf values (re-extract them; check the audio)")
    return x


def normalize(x: np.ndarray, mode: str) -> np.ndarray:
    """Per-utterance mean/variance normalisation (each dim to zero mean, unit variance)."""
    if mode == "none":
        return x
    if mode != "utterance_mvn":
        raise PolyspeechError(f"unknown normalization '{mode}' (choose one of {', '.join(NORMALIZATIONS)})")
    return (x - x.mean(0, keepdims=True)) / (x.std(0, keepdims=True) + 1e-5)


@dataclass
class FeatureSet:
    """Normalised feature matrices of many cuts: a list, or a LazySequence loading them on access."""

    ids: Sequence[str]
    feats: Sequence[np.ndarray]
    frame_shift: float
    feature_type: str
    lens: np.ndarray = field(default=None)  # type: ignore[assignment]  # frames per cut (metadata)
    feat_dim: int = 0

    def __post_init__(self) -> None:
        if self.lens is None:
            self.lens = np.array([len(f) for f in self.feats], dtype=np.int64)
        if not self.feat_dim:
            self.feat_dim = int(self.feats[0].shape[1])

    @property
    def dim(self) -> int:
        return self.feat_dim

    @property
    def num_frames(self) -> int:
        return int(self.lens.sum())


def load_feature_set(cuts: Iterable[Cut], normalization: str, where: str = "", progress: str | None = None) -> FeatureSet:
    """Load, check and normalise the features of every cut into memory; all cuts must share one feature dim."""
    from polyspeech_cli.console import track

    cuts = list(cuts)
    if not cuts:
        raise PolyspeechError(f"{where}no cuts to read features from (the manifest is empty)")
    ids, feats, dim = [], [], None
    for cut in track(cuts, progress or "loading features"):
        x = load_cut_features(cut, where)
        if dim is None:
            dim = x.shape[1]
        elif x.shape[1] != dim:
            raise PolyspeechError(f"{where}cut '{cut.id}': feature dim {x.shape[1]} differs from the first cut's {dim}")
        ids.append(cut.id)
        feats.append(normalize(x, normalization))
    first = cuts[0].features
    return FeatureSet(ids, feats, float(first.frame_shift), str(first.type))


def stream_feature_set(path: Path | str, normalization: str, max_cuts: int = 0, cache_mb: int = 0) -> FeatureSet:
    """The cuts of a manifest (manifest order; the first `max_cuts` if > 0) as a FeatureSet whose
    `feats[i]` loads, checks and normalises cut i from storage on access (kept in a cache of at most
    `cache_mb`): memory does not grow with the manifest. `lens` comes from the metadata (one streaming pass)."""
    index = CutIndex(path, max_cuts=max_cuts)
    where = f"{path}: "

    def load(i: int) -> np.ndarray:
        cut = index.cut(i)
        x = load_cut_features(cut, where)
        if x.shape[1] != index.dim:
            raise PolyspeechError(f"{where}cut '{cut.id}': feature dim {x.shape[1]} differs from the first cut's {index.dim}")
        return normalize(x, normalization)

    feats = LazySequence(len(index), load, cache_mb * 2**20)
    ids = LazySequence(len(index), lambda i: index.cut(i).id)
    return FeatureSet(ids, feats, index.frame_shift, index.feature_type, lens=index.num_frames.copy(), feat_dim=index.dim)
