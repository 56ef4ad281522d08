"""LID / GID scoring: accuracy, per-class precision and recall, confusion matrix (markdown and PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def confusion(refs: list[str], hyps: list[str]) -> tuple[list[str], np.ndarray]:
    """Class labels (sorted) and the matrix M[ref, hyp] of counts."""
    labels = sorted(set(refs) | set(hyps))
    index = {c: i for i, c in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for r, h in zip(refs, hyps):
        matrix[index[r], index[h]] += 1
    return labels, matrix


def score_classes(rows: list[dict], name: str) -> dict:
    """Accuracy, per-class P/R and the confusion matrix of one LID/GID decode."""
    refs, hyps = [str(r["ref"]) for r in rows], [str(r["hyp"]) for r in rows]
    labels, matrix = confusion(refs, hyps)
    accuracy = float(np.trace(matrix) / max(matrix.sum(), 1))
    lines = ["|dataset|Snt|Acc|", "|---|---|---|", f"|{name}|{len(rows)}|{100 * accuracy:.1f}|", "", "|class|precision|recall|support|", "|---|---|---|---|"]
    per_class = {}
    for i, c in enumerate(labels):
        precision = matrix[i, i] / max(matrix[:, i].sum(), 1)
        recall = matrix[i, i] / max(matrix[i, :].sum(), 1)
        per_class[c] = {"precision": float(precision), "recall": float(recall), "support": int(matrix[i, :].sum())}
        lines.append(f"|{c}|{100 * precision:.1f}|{100 * recall:.1f}|{matrix[i, :].sum()}|")
    lines += ["", "Confusion matrix (rows: reference, columns: hypothesis)", "", "|ref \\ hyp|" + "|".join(labels) + "|", "|---" * (len(labels) + 1) + "|"]
    lines += [f"|{c}|" + "|".join(str(v) for v in matrix[i]) + "|" for i, c in enumerate(labels)]
    return {"accuracy": accuracy, "per_class": per_class, "labels": labels, "matrix": matrix.tolist(), "markdown": "\n".join(lines) + "\n"}


def plot_confusions(panels: dict[str, dict], path: Path) -> None:
    """One PNG with a confusion-matrix panel per scored classification set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polyspeech_cli.fileio import atomic_path

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (title, res) in zip(axes[0], panels.items()):
        m = np.array(res["matrix"])
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(res["labels"])), res["labels"])
        ax.set_yticks(range(len(res["labels"])), res["labels"])
        ax.set_xlabel("hypothesis")
        ax.set_ylabel("reference")
        ax.set_title(f"{title}: acc {100 * res['accuracy']:.1f}%")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
