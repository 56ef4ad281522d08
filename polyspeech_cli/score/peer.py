"""egs/real stage 8's table: the ESPnet peer vs our single-task ASR LM on the same speakers, same minutes.

The peer's numbers are quoted from its own `summary.json` (jiwer: CER with spaces counted, CER with
spaces removed, WER); ours are computed here from our decode's results.jsonl with the same
normalisation on the same prepared references, so the two rows compare like with like. CER without
spaces and WER come from `score.asr.count_errors` (the numbers `polyspeech score` reports); only the
CER with spaces counted, which `polyspeech score` never reports, is a direct jiwer call.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError, require_file
from polyspeech_cli.fileio import atomic_write_text
from polyspeech_cli.lm.summary import train_rows
from polyspeech_cli.score.asr import count_errors
from polyspeech_cli.score.results import read_results

PEER_KEYS = ("params", "train_min", "test_utts", "CER", "CER_nospace", "WER")
PEER_FIX = "run egs/real stage 8's ESPnet peer (shared/tools/espnet_peer/run_peer.sh) first, or fix --peer-summary"
NOT_WEIGHTS = ("rates", "feat_stats")  # buffers saved with the LM (task rates, CMVN stats), not parameters


@dataclass
class PeerTable:
    """The inputs of `polyspeech peer-table` (one field per option)."""

    peer_summary: Path
    ours_decode: Path
    ours_exp: Path
    ours_train_seconds: Path
    out: Path
    train_desc: str = ""
    ours_desc: str = ""
    score_out: Path | None = None
    title: str = "speechocean762: ESPnet peer vs our single-task ASR (stage 8)"
    # how the two ran, after "Both systems train on the same speakers (<train_desc>) "
    setup: str = "for the same wall-clock budget, side by side on the 2-core CPU (1 thread each), and decode the same 2 held-out test speakers"


def jiwer_scores(rows: list[dict]) -> dict:
    """Our decode scored as the peer scores itself: whitespace-normalised refs and hyps, empty refs
    left out (jiwer refuses them), `test_utts` counting every decoded utterance."""
    import jiwer

    pairs = [(" ".join(r["ref"].split()), " ".join(r["hyp"].split())) for r in rows if r["ref"].strip()]
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"test_utts": len(rows), "CER": jiwer.cer(refs, hyps), "CER_nospace": count_errors(refs, hyps, "char").error_rate,
            "WER": count_errors(refs, hyps, "word").error_rate}


def model_params(model: Path) -> int:
    """Parameters of a model file, counted from the safetensors header (shapes only: no tensor is
    read), without the buffers saved beside the weights."""
    from safetensors import safe_open

    require_file(model, "model file", "train the LM first (`polyspeech train lm`), or fix --ours-exp")
    try:
        with safe_open(str(model), "pt") as f:
            shapes = [f.get_slice(k).get_shape() for k in f.keys() if k not in NOT_WEIGHTS]
    except Exception as e:  # not safetensors, truncated
        raise PolyspeechError(f"{model}: not a safetensors model file ({type(e).__name__}); retrain it with `polyspeech train lm`") from e
    return sum(math.prod(shape) for shape in shapes)


def read_peer(path: Path) -> dict:
    """The peer's summary.json, checked for every number the table quotes."""
    require_file(path, "ESPnet peer summary", PEER_FIX)
    try:
        peer = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PolyspeechError(f"{path}: not valid JSON ({e.msg}); {PEER_FIX}") from None
    missing = [k for k in PEER_KEYS if not isinstance(peer, dict) or k not in peer]
    if missing:
        raise PolyspeechError(f"{path}: lacks {', '.join(missing)} (not a summary.json of the ESPnet peer); {PEER_FIX}")
    return peer


def ours_numbers(t: PeerTable) -> dict:
    """Our row: jiwer scores of the decode plus training minutes (the whole command and the loop
    alone), steps and parameters."""
    if not Path(t.ours_decode).is_dir():
        raise PolyspeechError(f"decode dir not found: {t.ours_decode} (run `polyspeech decode --task asr` on the test cuts first, or fix --ours-decode)")
    task, rows = read_results(t.ours_decode)
    results = Path(t.ours_decode) / "results.jsonl"
    if task != "asr":
        raise PolyspeechError(f"{results}: a {task} decode, not ASR (pass --ours-decode the decode_asr_<set> dir)")
    if not any(r["ref"].strip() for r in rows):
        raise PolyspeechError(f"{results}: no utterance has a reference transcript, nothing to score (check the test cuts' texts)")
    ours = jiwer_scores(rows)
    seconds = require_file(t.ours_train_seconds, "training seconds file", "written by egs/real stage 8 after `polyspeech train lm`; "
                                                                          "re-run the stage, or fix --ours-train-seconds")
    try:
        wall = float(seconds.read_text(encoding="utf-8").split()[0])
    except (IndexError, ValueError):
        raise PolyspeechError(f"{seconds}: not a number of seconds; re-run egs/real stage 8 (it writes the file)") from None
    train = train_rows(t.ours_exp)
    ours.update(train_min=wall / 60, train_loop_min=float(train[-1]["elapsed_s"]) / 60, steps=int(train[-1]["step"]),
                params=model_params(Path(t.ours_exp) / "model.safetensors"))
    return ours


def peer_markdown(peer: dict, ours: dict, train_desc: str, ours_desc: str, title: str = PeerTable.title, setup: str = PeerTable.setup) -> str:
    """The section RESULTS.md takes with `compare-sources --section`."""
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [
        f"## {title}", "",
        f"Both systems train on the same speakers ({train_desc}) {setup}; both are scored with jiwer on the same "
        "prepared transcripts. The peer is ESPnet 202511 (`shared/tools/espnet_peer`, a conformer CTC/attention model with "
        "char tokens, SpecAugment off; its own settings and scoring); its numbers are quoted from its `summary.json`. "
        f"Ours: {ours_desc}.", "",
        "| system | params (M) | train min | test utts | CER % (spaces counted) | CER % (spaces removed) | WER % |",
        "|---|---|---|---|---|---|---|",
        f"| ESPnet 202511 peer ({peer.get('epochs', '?')} epochs) | {peer['params'] / 1e6:.2f} | {peer['train_min']:.1f} | {peer['test_utts']} | "
        f"{pct(peer['CER'])} | {pct(peer['CER_nospace'])} | {pct(peer['WER'])} |",
        f"| ours, single-task ASR LM ({ours['steps']} steps) | {ours['params'] / 1e6:.2f} | {ours['train_min']:.1f} | {ours['test_utts']} | "
        f"{pct(ours['CER'])} | {pct(ours['CER_nospace'])} | {pct(ours['WER'])} |", "",
        f"Train min: the peer's `train_min` (its `asr_train` process; stats collection and decoding excluded); ours: the seconds "
        f"the recipe timed (egs/real: the whole `polyspeech train lm` command; egs/mini: its training loop, as the budget table "
        f"reads it) ({ours['train_loop_min']:.1f} min in the training loop). `polyspeech score` reports "
        "CER with spaces removed.", "",
    ]
    return "\n".join(lines)


def write_peer_table(t: PeerTable) -> str:
    """Write the table (and, with `score_out`, our numbers as JSON); returns the table. Every input
    is read before anything is written, so a bad one leaves no half-updated pair behind."""
    peer = read_peer(Path(t.peer_summary))
    ours = ours_numbers(t)
    table = peer_markdown(peer, ours, t.train_desc, t.ours_desc, t.title, t.setup)
    if t.score_out:
        atomic_write_text(Path(t.score_out), json.dumps(ours, indent=1) + "\n")
    atomic_write_text(Path(t.out), table)
    return table
