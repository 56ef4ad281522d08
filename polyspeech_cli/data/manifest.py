"""The one cuts-manifest reader of the package: every verb opens its cuts with `read_cuts`.

`read_cuts(path)` returns a lazy CutSet: the file is read as the set is iterated, every pass
anew, so memory does not grow with the manifest (a 26k-hour set streams like a toy one).
`.jsonl` / `.jsonl.gz` (what `prepare` and `extract-tokens` write) are read line by line;
`.json` / `.json.gz` (a JSON array, Lhotse's `to_json`) are streamed item by item with an
incremental parse, never `json.load`ed whole. A missing, empty or garbled manifest, or one that
holds something other than cuts, is a one-line PolyspeechError naming the file (and the line or
item) and the fix. `len(cuts)` counts the items in one more streaming pass (cached).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

from lhotse import CutSet
from lhotse.cut import Cut

from polyspeech_cli.errors import PolyspeechError, require_file

DEFAULT_FIX = "run `polyspeech prepare` (and `extract-tokens`) first, or fix the path"
FORMATS = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
CHUNK_CHARS = 1 << 20  # characters read at a time from a JSON array manifest
_WS = re.compile(r"\s*")


def manifest_format(path: Path) -> str:
    """"jsonl" or "json" from the file name (`.jsonl[.gz]`, `.json[.gz]`), else a one-line error."""
    name = Path(path).name
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if name.endswith((".json", ".json.gz")):
        return "json"
    raise PolyspeechError(f"{path}: not a cuts manifest name (expected one of {', '.join(FORMATS)}); pass a manifest "
                          "from `polyspeech prepare` or `extract-tokens`")


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")


def _jsonl_items(path: Path) -> Iterator[tuple[str, object]]:
    """(where, decoded JSON value) per non-blank line."""
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield f"line {n}", json.loads(line)
                except ValueError as e:
                    raise ValueError(f"line {n}: {e}") from e


def _json_items(path: Path) -> Iterator[tuple[str, object]]:
    """(where, element) per element of the top-level JSON array, parsed incrementally (a chunk of
    `CHUNK_CHARS` characters at a time plus the element being read)."""
    decoder = json.JSONDecoder()
    with _open_text(path) as f:
        buf, pos, eof = "", 0, False

        def more() -> bool:  # append a chunk; False at end of file
            nonlocal buf, pos, eof
            chunk = f.read(CHUNK_CHARS)
            eof = not chunk
            buf, pos = buf[pos:] + chunk, 0
            return not eof

        def peek() -> str:  # the next non-blank character, "" at end of file
            nonlocal pos
            while True:
                pos = _WS.match(buf, pos).end()
                if pos < len(buf):
                    return buf[pos]
                if not more():
                    return ""

        if peek() != "[":
            raise ValueError("not a JSON array of cuts (a .json manifest holds one array, as Lhotse's to_json writes it)")
        pos += 1
        n = 0
        while True:
            c = peek()
            if c == "":
                raise ValueError(f"the file ends inside the array, after item {n} (truncated?)")
            if c == "]":
                pos += 1
                if peek() != "":
                    raise ValueError("extra data after the JSON array")
                return
            if n:
                if c != ",":
                    raise ValueError(f"expected ',' or ']' after item {n}, found {c!r}")
                pos += 1
                peek()
            while True:
                try:
                    item, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    if not more():
                        raise ValueError(f"item {n + 1}: {e}") from e
                    continue
                if end == len(buf) and not eof and more():
                    continue  # a value at the very end of the buffer may go on in the next chunk
                break
            pos, n = end, n + 1
            yield f"item {n}", item


class LazyManifest:
    """The items of one manifest file, deserialized as they are iterated (each pass re-reads the
    file); a garbled line or a non-cut item is a one-line PolyspeechError naming the file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.format = manifest_format(self.path)
        self._len: int | None = None

    def _raw(self) -> Iterator[tuple[str, object]]:
        return _jsonl_items(self.path) if self.format == "jsonl" else _json_items(self.path)

    def __iter__(self) -> Iterator[Cut]:
        from lhotse.serialization import deserialize_item

        it = self._raw()
        while True:
            where = "?"
            try:
                where, data = next(it)
                cut = deserialize_item(data) if isinstance(data, dict) else data
            except StopIteration:
                return
            except Exception as e:  # gzip, JSON and Lhotse raise many types for a bad file
                msg = " ".join(f"{type(e).__name__}: {e}".split())
                at = f" ({where})" if where != "?" else ""
                raise PolyspeechError(f"{self.path}: not a readable Lhotse cuts manifest{at} ({msg})") from e
            if not isinstance(cut, Cut):
                raise PolyspeechError(f"{self.path}: {where} holds {type(cut).__name__} items, not cuts "
                                      "(pass a *_cuts_*.jsonl.gz manifest)")
            yield cut

    def __len__(self) -> int:
        if self._len is None:
            try:
                self._len = sum(1 for _ in self._raw())
            except Exception as e:
                msg = " ".join(f"{type(e).__name__}: {e}".split())
                raise PolyspeechError(f"{self.path}: not a readable Lhotse cuts manifest ({msg})") from e
        return self._len


def read_cuts(path: Path | str, what: str = "cuts manifest", fix: str = DEFAULT_FIX, allow_empty: bool = False) -> CutSet:
    """The cuts of a `.jsonl[.gz]` or `.json[.gz]` manifest as a lazy CutSet (`cuts.is_lazy`).

    Checked now: the file exists (else "`what` not found: PATH (`fix`)"), its name says its format,
    and its first item is a readable cut; an empty manifest is an error unless `allow_empty`.
    Later items are checked as they are read."""
    path = require_file(Path(path), what, fix)
    source = LazyManifest(path)
    first = next(iter(source), None)  # reads one item: garbled files fail here, not mid-way
    if first is None and not allow_empty:
        raise PolyspeechError(f"{path}: holds no cuts (an empty manifest); {fix}")
    return CutSet(source)
