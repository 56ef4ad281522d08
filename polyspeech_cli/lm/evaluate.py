"""Dev metrics of an LM during and after training: ASR CER (attention greedy and CTC best path),
LID/GID accuracy — decoded by the same code as `polyspeech decode` and scored with the same CER
as `polyspeech score` (characters without spaces). Run during training (`train lm --dev-cuts`);
a trained model on any set: `polyspeech evaluate`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from polyspeech_cli.decode import lm_io
from polyspeech_cli.decode.recognize import classify_items, ctc_best_path, transcribe_items
from polyspeech_cli.lm.config import TrainConfig
from polyspeech_cli.lm.model import PolySpeechLM
from polyspeech_cli.lm.tasks import has_labels, reference
from polyspeech_cli.lm.vocab import Vocab
from polyspeech_cli.score.asr import count_errors


@torch.no_grad()
def evaluate(model: PolySpeechLM, vocab: Vocab, cfg: TrainConfig, cuts, tasks: list[str], max_utts: int = 50,
             batch_size: int = 8, per_language: bool = False, exp_dir: Path = Path(".")) -> dict[str, float]:
    """Greedy metrics on `max_utts` cuts carrying each task's labels, evenly spaced over `cuts` (TTS: skipped);
    `exp_dir` is where the model's `features.json` lies (for cuts without stored features)."""
    was_training = model.training
    model.eval()
    lm = lm_io.wrap_model(model, vocab, cfg, exp_dir)
    metrics: dict[str, float] = {}
    for task in [t for t in tasks if t != "tts"]:
        sel = _evenly_spaced(cuts, lambda c: has_labels(c, task, cfg.data), max_utts)
        if not sel:
            continue
        refs = [reference(c, task) for c in sel]
        hyps, ctc_hyps = [], []
        for i in range(0, len(sel), batch_size):
            items = [lm_io.cut_item(lm, task, c) for c in sel[i : i + batch_size]]
            if task == "asr":
                hyps += transcribe_items(lm, items)
                ctc = ctc_best_path(lm, items)
                ctc_hyps += ctc if ctc is not None else []
            else:
                hyps += [max(p, key=p.get) for p in classify_items(lm, task, items)]
        if task == "asr":
            metrics["asr_cer"] = count_errors(refs, hyps, "char").error_rate
            if per_language:
                langs = sorted({c.supervisions[0].language or "?" for c in sel})
                for lang in langs:
                    idx = [j for j, c in enumerate(sel) if (c.supervisions[0].language or "?") == lang]
                    metrics[f"asr_cer_{lang}"] = count_errors([refs[j] for j in idx], [hyps[j] for j in idx], "char").error_rate
            if ctc_hyps:
                metrics["asr_ctc_cer"] = count_errors(refs, ctc_hyps, "char").error_rate
        else:
            metrics[f"{task}_acc"] = sum(h == r for h, r in zip(hyps, refs)) / len(sel)
    model.train(was_training)
    return metrics


def _evenly_spaced(cuts, keep, n: int) -> list:
    """`n` of the cuts for which `keep` holds, evenly spaced over the set (so every language and voice
    is in: sets are ordered by both), in two streaming passes: only the chosen cuts are held."""
    total = sum(1 for c in cuts if keep(c))
    n = min(n, total)
    if not n:
        return []
    wanted = {round(i * total / n) for i in range(n)}
    labelled = (c for c in cuts if keep(c))
    return [c for j, c in enumerate(labelled) if j in wanted]
