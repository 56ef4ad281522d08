"""Reading the decode outputs that `polyspeech score` consumes.

Contract with `polyspeech decode`: a directory `decode_<task>_<set>/` holding `results.jsonl`, one
JSON object per utterance with at least `id`, `task` (`asr`/`lid`/`gid`/`tts`) and:
- asr: `ref`, `hyp` (text), `language`;
- lid / gid: `ref`, `hyp` (class labels), optionally `posterior`;
- tts: `wav` (the synthesized file), `reference_wav` (real audio of the target speaker),
  `speaker`.
"""

from __future__ import annotations

import json
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.lm.tasks import TASKS

REQUIRED = {"asr": ("ref", "hyp"), "lid": ("ref", "hyp"), "gid": ("ref", "hyp"), "tts": ("wav", "reference_wav", "speaker")}


def read_results(decode_dir: Path) -> tuple[str, list[dict]]:
    """Return (task, rows) of a decode dir, checking every row has what its task needs."""
    path = Path(decode_dir) / "results.jsonl"
    if not path.is_file():
        raise PolyspeechError(f"{path}: not found (run `polyspeech decode` for this set first)")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise PolyspeechError(f"{path}:{lineno}: not valid JSON ({e.msg}); re-run the decode stage") from None
    if not rows:
        raise PolyspeechError(f"{path}: empty (the decode produced no utterances)")
    tasks = {r.get("task") for r in rows}
    if len(tasks) != 1 or next(iter(tasks)) not in TASKS:
        raise PolyspeechError(f"{path}: rows must share one task among {', '.join(TASKS)}, found {sorted(map(str, tasks))}")
    task = tasks.pop()
    for lineno, row in enumerate(rows, start=1):
        missing = [k for k in ("id", *REQUIRED[task]) if k not in row]
        if missing:
            raise PolyspeechError(f"{path}: row {lineno} ({row.get('id', '?')}) lacks {', '.join(missing)}")
    return task, rows


def decode_inputs(decode_dir: Path) -> list[str]:
    """The input files a finished decode's stamp (`decode.json`) names: its checkpoint and cuts."""
    from polyspeech_cli.stamps import read_stamp

    return [i.get("path", "") for i in ((read_stamp(Path(decode_dir) / "decode.json") or {}).get("key") or {}).get("inputs", [])]


def judged_tts_decode(asr_decode: Path) -> Path | None:
    """The TTS decode whose synthesized audio an ASR decode transcribed (its input cuts are that
    decode's `cuts.jsonl.gz`), or None for an ASR decode of real audio."""
    for p in map(Path, decode_inputs(asr_decode)):
        if p.name == "cuts.jsonl.gz" and (p.parent / "results.jsonl").is_file():
            return p.parent
    return None
