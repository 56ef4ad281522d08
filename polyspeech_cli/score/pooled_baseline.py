"""The floor every LID/GID model must clear: a linear classifier on pooled features.

Each utterance becomes the mean and standard deviation of its stored features over time (2 x D
numbers, e.g. 160 for 80-dim fbank); a multinomial logistic regression (standardised inputs, L2,
L-BFGS in torch) is fitted on the train cuts and scored on the test cuts with the same
`score_classes` as `polyspeech score`. Writes `scores.json` in the format of `score`, so `compare
--reference` shows it beside the systems. Costs well under a minute on egs/mini.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from polyspeech_cli.codec.data import load_cut_features
from polyspeech_cli.data.manifest import read_cuts
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_write_text
from polyspeech_cli.lm.tasks import CLASS_TASKS, reference
from polyspeech_cli.score.classify import score_classes


def pooled_stats(cuts: Iterable, task: str) -> tuple[np.ndarray, list[str], list[str]]:
    """(N, 2D) mean and std of each labelled cut's features, its labels and cut ids."""
    rows, labels, ids = [], [], []
    for cut in cuts:
        label = reference(cut, task)
        if label is None or not cut.has_features:
            continue
        x = load_cut_features(cut)
        rows.append(np.concatenate([x.mean(0), x.std(0)]))
        labels.append(label)
        ids.append(cut.id)
    return np.asarray(rows, dtype=np.float64), labels, ids


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1e-3, iters: int = 200) -> tuple[torch.Tensor, ...]:
    """Softmax regression on standardised `x`: (mean, std, W, b)."""
    mean, std = x.mean(0), x.std(0) + 1e-8
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y)
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return torch.from_numpy(mean), torch.from_numpy(std), w.detach(), b.detach()


def pooled_baseline(train_cuts: Iterable, test_cuts: Iterable, tasks: list[str], name: str = "test") -> dict[str, dict]:
    """{"<task>_<name>": scores} for each class task: the linear baseline fitted on train, scored on test."""
    out = {}
    for task in tasks:
        if task not in CLASS_TASKS:
            raise PolyspeechError(f"the pooled baseline is for the class tasks ({', '.join(CLASS_TASKS)}), not '{task}'")
        x, labels, _ = pooled_stats(train_cuts, task)
        tx, tlabels, tids = pooled_stats(test_cuts, task)
        if len(set(labels)) < 2 or not tlabels:
            raise PolyspeechError(f"task '{task}': the train cuts need features and at least 2 classes and the test cuts "
                                  f"labelled features (got {len(set(labels))} train classes, {len(tlabels)} test cuts)")
        classes = sorted(set(labels))
        mean, std, w, b = fit_logistic(x, np.array([classes.index(c) for c in labels]), len(classes))
        pred = ((torch.from_numpy(tx) - mean) / std @ w + b).argmax(1).tolist()
        rows = [{"id": i, "ref": r, "hyp": classes[p]} for i, r, p in zip(tids, tlabels, pred)]
        out[f"{task}_{name}"] = {"task": task, **score_classes(rows, f"{task}_{name}")}
    return out


def write_baseline(train_cuts: Path, test_cuts: Path, tasks: list[str], out: Path) -> dict[str, dict]:
    """Fit and score; `out` (scores.json) written atomically."""
    scores = pooled_baseline(read_cuts(train_cuts), read_cuts(test_cuts), tasks)
    atomic_write_text(Path(out), json.dumps(scores, indent=1) + "\n")
    return scores
