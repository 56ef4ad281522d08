#!/usr/bin/env python3
"""Stage 8's table: the ESPnet peer vs our single-task ASR LM on the same speakers, same minutes.

    python3 local/peer_table.py --peer-summary OUT/espnet/decode_test/summary.json \
        --ours-decode OUT/lm_asr/decode_asr_so_test --ours-exp OUT/lm_asr --ours-train-seconds OUT/lm_asr/train_seconds \
        --out OUT/peer_table.md [--score-out OUT/ours_score.json]

Numbers are read from the score files: the peer's own summary.json (jiwer: CER with spaces counted,
CER with spaces removed, WER) and our decode's results.jsonl, scored here with the same jiwer calls
on the same prepared references (written to --score-out), next to `polyspeech score`'s CER.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def score(rows: list[dict]) -> dict:
    import jiwer

    pairs = [(" ".join(r["ref"].split()), " ".join(r["hyp"].split())) for r in rows if r["ref"].strip()]
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"test_utts": len(rows), "CER": jiwer.cer(refs, hyps), "CER_nospace": jiwer.cer([r.replace(" ", "") for r in refs],
            [h.replace(" ", "") for h in hyps]), "WER": jiwer.wer(refs, hyps)}


def params(exp: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(exp / "model.safetensors"), "pt") as f:
        return sum(_prod(f.get_slice(k).get_shape()) for k in f.keys() if k not in ("rates", "feat_stats"))


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer-summary", type=Path, required=True)
    p.add_argument("--ours-decode", type=Path, required=True)
    p.add_argument("--ours-exp", type=Path, required=True)
    p.add_argument("--ours-train-seconds", type=Path, required=True)
    p.add_argument("--train-desc", default="")
    p.add_argument("--ours-desc", default="")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--score-out", type=Path)
    a = p.parse_args()
    peer = json.loads(a.peer_summary.read_text())
    rows = [json.loads(line) for line in (a.ours_decode / "results.jsonl").read_text().splitlines() if line.strip()]
    ours = score(rows)
    wall = float(a.ours_train_seconds.read_text().split()[0])
    import csv

    log = [r for r in csv.DictReader(open(a.ours_exp / "train_log.csv")) if r["split"] == "train"]
    ours.update(train_min=wall / 60, train_loop_min=float(log[-1]["elapsed_s"]) / 60, steps=int(log[-1]["step"]), params=params(a.ours_exp))
    if a.score_out:
        a.score_out.write_text(json.dumps(ours, indent=1) + "\n")
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [
        "## speechocean762: ESPnet peer vs our single-task ASR (stage 8)", "",
        f"Both systems train on the same speakers ({a.train_desc}) for the same wall-clock budget, side by side on the "
        "2-core CPU (1 thread each), and decode the same 2 held-out test speakers; both are scored with jiwer on the same "
        "prepared transcripts. The peer is ESPnet 202511 (`shared/tools/espnet_peer`, a conformer CTC/attention model with "
        "char tokens, SpecAugment off; its own settings and scoring); its numbers are quoted from its `summary.json`. "
        f"Ours: {a.ours_desc}.", "",
        "| system | params (M) | train min | test utts | CER % (spaces counted) | CER % (spaces removed) | WER % |",
        "|---|---|---|---|---|---|---|",
        f"| ESPnet 202511 peer ({peer.get('epochs', '?')} epochs) | {peer['params'] / 1e6:.2f} | {peer['train_min']:.1f} | {peer['test_utts']} | "
        f"{pct(peer['CER'])} | {pct(peer['CER_nospace'])} | {pct(peer['WER'])} |",
        f"| ours, single-task ASR LM ({ours['steps']} steps) | {ours['params'] / 1e6:.2f} | {ours['train_min']:.1f} | {ours['test_utts']} | "
        f"{pct(ours['CER'])} | {pct(ours['CER_nospace'])} | {pct(ours['WER'])} |", "",
        f"Train min: the peer's `train_min` (its `asr_train` process; stats collection and decoding excluded); ours: the whole "
        f"`polyspeech train lm` command ({ours['train_loop_min']:.1f} min in the training loop). `polyspeech score` reports "
        "CER with spaces removed.", "",
    ]
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
