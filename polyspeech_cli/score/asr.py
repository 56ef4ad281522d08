"""ASR scoring: CER and WER per language with jiwer, in ESPnet's `|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|` form."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import jiwer

HEADER = "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|\n|---|---|---|---|---|---|---|---|---|"


@dataclass
class ErrorCounts:
    """Alignment counts over a set of sentences (tokens = characters or words)."""

    sentences: int
    tokens: int
    hits: int
    substitutions: int
    deletions: int
    insertions: int
    sentence_errors: int

    @property
    def error_rate(self) -> float:
        """(S + D + I) / N, as a fraction."""
        return (self.substitutions + self.deletions + self.insertions) / max(self.tokens, 1)

    def row(self, name: str) -> str:
        pct = lambda n: f"{100 * n / max(self.tokens, 1):.1f}"  # noqa: E731
        return (
            f"|{name}|{self.sentences}|{self.tokens}|{pct(self.hits)}|{pct(self.substitutions)}|{pct(self.deletions)}|"
            f"{pct(self.insertions)}|{100 * self.error_rate:.1f}|{100 * self.sentence_errors / max(self.sentences, 1):.1f}|"
        )


def _chars(text: str) -> str:
    # Characters without spaces: Mandarin has no word spaces, and a space is not a character error.
    return " ".join(c for c in text if not c.isspace())


def count_errors(refs: list[str], hyps: list[str], unit: str) -> ErrorCounts:
    """Align hyps to refs by `unit` ("char" or "word") and count errors."""
    if unit == "char":
        refs, hyps = [_chars(r) for r in refs], [_chars(h) for h in hyps]
    # jiwer refuses empty references; an empty ref only contributes insertions.
    pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    extra_ins = sum(len(h.split()) for r, h in zip(refs, hyps) if not r.strip())
    counts = ErrorCounts(len(refs), 0, 0, 0, 0, extra_ins, sum(bool(h.strip()) for r, h in zip(refs, hyps) if not r.strip()))
    if pairs:
        out = jiwer.process_words([r for r, _ in pairs], [h if h.strip() else "" for _, h in pairs])
        counts.hits, counts.substitutions, counts.deletions = out.hits, out.substitutions, out.deletions
        counts.insertions += out.insertions
        counts.tokens = out.hits + out.substitutions + out.deletions
        counts.sentence_errors += sum(r.split() != h.split() for r, h in pairs)
    return counts


def score_asr(rows: list[dict], name: str) -> dict:
    """CER and WER overall and per language; returns numbers and markdown tables."""
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_lang[r.get("language") or "?"].append(r)
    result: dict = {"cer": {}, "wer": {}}
    tables = {}
    for unit, key in (("char", "cer"), ("word", "wer")):
        lines = [HEADER]
        for lang, group in [("all", rows), *sorted(by_lang.items())] if len(by_lang) > 1 else [("all", rows)]:
            counts = count_errors([g["ref"] for g in group], [g["hyp"] for g in group], unit)
            result[key][lang] = counts.error_rate
            lines.append(counts.row(f"{name}/{lang}"))
        tables[key] = "\n".join(lines)
    result["markdown"] = f"### CER\n{tables['cer']}\n\n### WER\n{tables['wer']}\n"
    return result
