"""A small greedy-decoding evaluator: ASR CER (attention and CTC), LID/GID accuracy.

Used during training (`eval_every`) and standalone:
    python -m polyspeech_cli.lm.evaluate --exp-dir exp/lm --cuts data/synth_cuts_dev.jsonl.gz
The full `polyspeech decode` (beam search, joint CTC/attention, TTS) is a separate stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from lhotse import CutSet

from polyspeech_cli.lm.data import DataConfig, TaskDataset, has_labels, to_device
from polyspeech_cli.lm.model import PolySpeechLM
from polyspeech_cli.lm.vocab import Vocab


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings (characters)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@torch.no_grad()
def evaluate(model: PolySpeechLM, vocab: Vocab, cuts: CutSet, tasks: list[str], data_cfg: DataConfig,
             device: torch.device, max_utts: int = 50, batch_size: int = 8, per_language: bool = False) -> dict[str, float]:
    """Greedy metrics on the first `max_utts` cuts carrying each task's labels (TTS: skipped)."""
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    for task in [t for t in tasks if t != "tts"]:
        sel = [c for c in cuts if has_labels(c, task, data_cfg)][:max_utts]
        if not sel:
            continue
        ds = TaskDataset(task, vocab, data_cfg, model.feat_stats.cpu())
        errs = ctc_errs = chars = correct = 0
        by_lang: dict[str, list[int]] = {}
        for i in range(0, len(sel), batch_size):
            chunk = CutSet.from_cuts(sel[i : i + batch_size])
            batch = to_device(ds[chunk], device)
            refs = [s[1:-1].tolist() for s in batch["suffix"]]
            batch["suffix"] = [s[:1] for s in batch["suffix"]]  # just <sep>
            if task == "asr":
                hyps = model.greedy(batch, max_new=max(len(r) for r in refs) * 2 + 10, allowed=(vocab.text_offset, vocab.speech_offset))
                for h, r, cut in zip(hyps, refs, chunk):
                    ref = vocab.decode_text(r)
                    e = edit_distance(vocab.decode_text(h), ref)
                    errs, chars = errs + e, chars + len(ref)
                    lang = by_lang.setdefault(cut.supervisions[0].language or "?", [0, 0])
                    lang[0], lang[1] = lang[0] + e, lang[1] + len(ref)
                if model.ctc_head is not None:
                    for h, r in zip(model.ctc_greedy(batch), refs):
                        ctc_errs += edit_distance(vocab.decode_text(h), vocab.decode_text(r))
            else:
                lo, hi = (vocab.lang_offset, vocab.gender_offset) if task == "lid" else (vocab.gender_offset, vocab.size)
                hyps = model.greedy(batch, max_new=1, allowed=(lo, hi))
                correct += sum(h[:1] == r[:1] for h, r in zip(hyps, refs))
        if task == "asr":
            metrics["asr_cer"] = errs / max(chars, 1)
            if per_language:
                metrics.update({f"asr_cer_{k}": e / max(n, 1) for k, (e, n) in sorted(by_lang.items())})
            if model.ctc_head is not None:
                metrics["asr_ctc_cer"] = ctc_errs / max(chars, 1)
        else:
            metrics[f"{task}_acc"] = correct / len(sel)
    model.train(was_training)
    return metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--cuts", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the newest in <exp>/ckpt")
    p.add_argument("--tasks", default="asr,lid,gid")
    p.add_argument("--max-utts", type=int, default=100)
    args = p.parse_args()
    from polyspeech_cli.lm.checkpoint import load_model

    torch.set_num_threads(1)
    model, vocab, cfg = load_model(args.exp_dir, args.checkpoint)
    metrics = evaluate(model, vocab, CutSet.from_file(args.cuts), args.tasks.split(","), cfg.data, torch.device("cpu"), args.max_utts, per_language=True)
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
