"""Text normalisation for transcripts, and reading text files with clear encoding errors."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from polyspeech_cli.data.validate import BadItems
from polyspeech_cli.errors import BadItemError, PolyspeechError

TEXT_NORMS = ("none", "nfkc", "asr")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str, mode: str) -> str:
    """Normalise a transcript.

    `none`: unchanged; `nfkc`: Unicode NFKC and single spaces; `asr`: additionally case-folded with
    punctuation removed (apostrophes inside words are kept: "it's"), the usual ASR scoring form.
    """
    if mode == "none":
        return text
    if mode not in TEXT_NORMS:
        raise PolyspeechError(f"unknown text normalisation '{mode}' (choose one of {', '.join(TEXT_NORMS)})")
    text = unicodedata.normalize("NFKC", text)
    if mode == "asr":
        text = text.casefold()
        text = "".join(
            c if not unicodedata.category(c).startswith("P") or c == "'" else " " for c in text
        )
        text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return _SPACES.sub(" ", text).strip()


def read_text_lines(path: Path, bad: BadItems) -> Iterator[tuple[int, str]]:
    """Yield (line number, line) of a UTF-8 text file; a line in another encoding is a bad item."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                fix = f"convert the file to UTF-8 (e.g. `iconv -f GB18030 -t UTF-8 {path.name}`) or pass --skip-bad"
                err = BadItemError(f"{path}:{lineno}: text is not valid UTF-8; {fix}")
                if lineno == 1 or not bad.skip:
                    raise err from None
                bad.dropped.append(str(err))
                continue
            if lineno == 1:
                line = line.lstrip("\ufeff")  # a UTF-8 byte-order mark is not part of the header
            yield lineno, line
