"""A PNG of one utterance's input features above the codec's reconstruction (a quick sanity look)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyspeech_cli.fileio import atomic_path


def plot_reconstruction(x: np.ndarray, y: np.ndarray, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    vmin, vmax = np.percentile(x, [1, 99])
    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for ax, m, name in zip(axes, (x, y), ("input (normalised)", "reconstruction")):
        ax.imshow(m.T, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_ylabel(name)
    axes[0].set_title(title)
    axes[1].set_xlabel("frame")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
