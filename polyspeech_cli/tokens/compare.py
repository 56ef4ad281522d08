"""`codec-eval`: SSET (first book / all books) vs k-means with the same K, on one dev set; for a
codec that downsamples, also k-means at SSET's token rate (stacked frames, fitted on --train-cuts).

All three reconstruct the same normalised features (the codec's normalisation), so k-means
centroids must have been fitted with that normalisation too; a mismatch is an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from polyspeech_cli.codec.checkpoint import load_codec
from polyspeech_cli.codec.data import load_feature_set
from polyspeech_cli.codec.evaluate import Recon, codec_reconstruct, usage_stats
from polyspeech_cli.console import console
from polyspeech_cli.data.manifest import read_cuts
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_write_text
from polyspeech_cli.stamps import is_fresh, stamp_key, write_stamp
from polyspeech_cli.tokens.kmeans import (
    KMeansConfig,
    fit_kmeans,
    load_centroids,
    quantize,
)


def stack_frames(x: np.ndarray, s: int) -> np.ndarray:
    """(T, D) -> (T // s, s * D): consecutive frames side by side."""
    t = x.shape[0] // s * s
    return x[:t].reshape(-1, s * x.shape[1])


def _kmeans_row(feats: list[np.ndarray], centroids: np.ndarray, stack: int, frame_shift: float) -> dict[str, Any]:
    """Reconstruction by the nearest centroid (over `stack` stacked frames) and code usage."""
    r, ids = Recon(), []
    for x in feats:
        i = quantize(stack_frames(x, stack), centroids)
        r.add(x[: len(i) * stack], centroids[i].reshape(-1, x.shape[1]))
        ids.append(i)
    k = centroids.shape[0]
    u, p = usage_stats(np.concatenate(ids), k)
    return {"codebooks": 1, "codebook_size": k, "token_frame_shift": frame_shift * stack, "bits_per_second": np.log2(k) / (frame_shift * stack),
            "rel_mse": r.rel_mse, "cosine": r.cosine, "usage": [u], "perplexity": [p]}


def compare(dev_cuts: Path, checkpoint: Path, kmeans: Path | None, train_cuts: Path | None, out: Path, max_cuts: int | None = None) -> dict[str, Any]:
    # The stamp: options + identity of every input file; the same key again does nothing.
    inputs = [Path(p) for p in (dev_cuts, checkpoint, kmeans, train_cuts) if p is not None]
    stamp = Path(out).with_name(f".{Path(out).stem}.stamp.json")
    options = {"kmeans": kmeans, "train_cuts": train_cuts, "max_cuts": max_cuts}
    key = stamp_key(options, inputs) if all(p.exists() for p in inputs) else None  # a missing one fails below
    if key is not None and is_fresh(stamp, key):
        console.print(f"{out}: already evaluated with these inputs and options; nothing to do")
        return json.loads(Path(out).read_text(encoding="utf-8"))
    model, meta = load_codec(checkpoint)
    cfg = model.cfg
    if kmeans is None and train_cuts is None:
        raise PolyspeechError("codec-eval needs --kmeans CENTROIDS or --train-cuts CUTS (to fit k-means with the codec's K)")
    cuts = read_cuts(dev_cuts)
    dev = load_feature_set(cuts.subset(first=max_cuts) if max_cuts else cuts, meta["normalization"], f"{dev_cuts}: ")
    if dev.dim != meta["feat_dim"]:
        raise PolyspeechError(f"{dev_cuts}: {dev.dim}-dim features, but {checkpoint} was trained on {meta['feat_dim']}-dim ones")
    if kmeans is not None:
        centroids, km = load_centroids(kmeans)
        if km.get("normalization") != meta["normalization"] or centroids.shape[1] != dev.dim:
            raise PolyspeechError(f"{kmeans}: centroids ({centroids.shape[1]}-dim, {km.get('normalization')}) do not match "
                                  f"the codec's features ({dev.dim}-dim, {meta['normalization']})")
        source = str(kmeans)
    else:
        assert train_cuts is not None
        train = load_feature_set(read_cuts(train_cuts), meta["normalization"], f"{train_cuts}: ", "k-means: loading features")
        console.print(f"fitting k-means K={cfg.codebook_size} on {train.num_frames} frames of {train_cuts}")
        centroids, source = fit_kmeans(np.concatenate(train.feats), KMeansConfig(k=cfg.codebook_size)), f"fitted on {train_cuts}"

    rows: dict[str, dict[str, Any]] = {}
    for name, n_q in (("SSET 1 book", 1), (f"SSET {cfg.n_codebooks} books", cfg.n_codebooks)):
        recons, codes = codec_reconstruct(model, dev.feats, n_q)
        r = Recon()
        for x, y in zip(dev.feats, recons):
            r.add(x, y)
        allc = np.concatenate(codes)
        stats = [usage_stats(allc[:, i], cfg.codebook_size) for i in range(n_q)]
        rows[name] = {"codebooks": n_q, "codebook_size": cfg.codebook_size, "token_frame_shift": meta["frame_shift"] * cfg.downsample,
                      "bits_per_second": n_q * np.log2(cfg.codebook_size) / (meta["frame_shift"] * cfg.downsample),
                      "rel_mse": r.rel_mse, "cosine": r.cosine, "usage": [s[0] for s in stats], "perplexity": [s[1] for s in stats]}
    rows[f"k-means K={centroids.shape[0]}"] = _kmeans_row(dev.feats, centroids, 1, dev.frame_shift)
    if cfg.downsample > 1 and train_cuts is not None:
        # The same token rate as SSET: k-means over `downsample` stacked frames, each code decoded
        # back to that many frames (the last odd frame of an utterance is left out of this row).
        s = cfg.downsample
        train = load_feature_set(read_cuts(train_cuts), meta["normalization"], f"{train_cuts}: ", "k-means: loading features")
        console.print(f"fitting k-means K={cfg.codebook_size} on {s} stacked frames ({s * dev.frame_shift * 1000:.0f} ms) of {train_cuts}")
        stacked = fit_kmeans(np.concatenate([stack_frames(x, s) for x in train.feats]), KMeansConfig(k=cfg.codebook_size))
        rows[f"k-means K={cfg.codebook_size}, {s} frames stacked"] = _kmeans_row(dev.feats, stacked, s, dev.frame_shift)

    table = Table(title=f"feature reconstruction on {dev_cuts} ({len(dev.feats)} cuts, {dev.num_frames} frames, {meta['feature_type']} {dev.dim}-dim, {meta['normalization']})")
    for col in ("tokens", "books x size", "frame", "bits/s", "rel MSE", "cosine", "code usage", "perplexity"):
        table.add_column(col, justify="left" if col == "tokens" else "right")
    for name, m in rows.items():
        table.add_row(name, f"{m['codebooks']}x{m['codebook_size']}", f"{m['token_frame_shift'] * 1000:.0f} ms", f"{m['bits_per_second']:.0f}",
                      f"{m['rel_mse']:.4f}", f"{m['cosine']:.3f}", " ".join(f"{x:.0%}" for x in m["usage"]),
                      " ".join(f"{x:.0f}" for x in m["perplexity"]))
    console.print(table)
    result = {"dev_cuts": str(dev_cuts), "checkpoint": str(checkpoint), "kmeans": source, "num_cuts": len(dev.feats),
              "num_frames": dev.num_frames, "feature_type": meta["feature_type"], "normalization": meta["normalization"], "results": rows}
    atomic_write_text(out, json.dumps(result, indent=2, default=float) + "\n")
    if key is not None:
        write_stamp(stamp, key, [out])
    console.print(f"wrote {out}")
    return result
