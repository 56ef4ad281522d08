"""Per-task loss curves from the training CSV, as a PNG next to it."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from polyspeech_cli.fileio import atomic_path


def plot_losses(csv_path: Path, png_path: Path) -> None:
    """One line per task (train loss), dashed for dev loss; x = optimiser step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with open(csv_path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("loss"):
                series[f"{row['split']} {row['task']}"].append((int(row["step"]), float(row["loss"])))
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, pts in sorted(series.items()):
        xs, ys = zip(*pts)
        ax.plot(xs, ys, "--" if name.startswith("dev") else "-", label=name)
    ax.set(xlabel="step", ylabel="loss", yscale="log", title=Path(csv_path).parent.name)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(Path(png_path)) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
