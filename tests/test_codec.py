"""The SSET codec: RVQ, training (improves, resumes exactly), SSET tokens, codec-eval, error paths."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from lhotse import CutSet
from safetensors.torch import load_file

from conftest import run_flat
from polyspeech_cli.codec.checkpoint import load_codec
from polyspeech_cli.codec.config import CodecConfig
from polyspeech_cli.codec.data import load_feature_set
from polyspeech_cli.codec.evaluate import evaluate_codec
from polyspeech_cli.codec.model import SSETCodec
from polyspeech_cli.codec.rvq import ResidualVQ
from polyspeech_cli.codec.train import train_codec
from polyspeech_cli.tokens.extract import ExtractOptions, extract
from polyspeech_cli.tokens.toy import make_toy_cuts

torch.set_num_threads(1)
TINY = dict(channels=32, res_blocks=1, kernel_size=3, latent_dim=8, n_codebooks=2, codebook_size=32, batch_size=4,
            segment_frames=64, warmup_steps=5, lr=3e-3, log_every=10, eval_every=30, checkpoint_every=10, seed=0)


run = run_flat


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("codec")
    make_toy_cuts(root / "wav", n=6, seconds=1.2).to_file(root / "toy_cuts_train.jsonl.gz")
    extract([root / "toy_cuts_train.jsonl.gz"], ExtractOptions(type="fbank", out_dir=root / "fbank"))
    (root / "tiny.yaml").write_text("".join(f"{k}: {v}\n" for k, v in TINY.items()))
    return root


def test_rvq_ema_learns_clusters_and_reseeds_dead_codes() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(16, 4, generator=g) * 3
    rvq = ResidualVQ(n_codebooks=2, size=16, dim=4, decay=0.8, dead_threshold=0.5)
    for book in rvq.books:  # start fully collapsed: every code at the origin
        book.embed.zero_(), book.embed_sum.zero_(), book.initted.fill_(True)
    x = centers.repeat(4, 1)
    assert len(rvq(x)[1][:, 0].unique()) == 1
    for _ in range(60):
        batch = centers[torch.randint(0, 16, (256,), generator=g)] + 0.05 * torch.randn(256, 4, generator=g)
        rvq(batch, update=True, gen=g)
    q, codes, _ = rvq(x)
    assert codes.shape == (64, 2) and codes.max() < 16
    assert len(codes[:, 0].unique()) >= 12  # dead codes were re-seeded onto the data
    err1, err2 = ((rvq(x, n_q=1)[0] - x) ** 2).mean(), ((q - x) ** 2).mean()
    assert err2 < 0.01 < err1 < x.var()  # the second book fixes what the first left


def test_model_shapes_for_any_length() -> None:
    for s in (1, 2, 3, 4):
        m = SSETCodec(20, CodecConfig(downsample=s, channels=16, latent_dim=8, codebook_size=8, res_blocks=1))
        for t in (1, 7, 64):
            x = torch.randn(2, t, 20)
            codes = m.encode(x)
            assert codes.shape == (2, -(-t // s), m.cfg.n_codebooks)
            assert m.decode(codes, t).shape == x.shape


def test_training_improves_reconstruction(data: Path) -> None:
    cfg = CodecConfig(**TINY, max_steps=60)
    fb = data / "fbank" / "toy_cuts_train.jsonl.gz"
    feats = load_feature_set(CutSet.from_file(fb), cfg.normalize)
    torch.manual_seed(0)
    init = SSETCodec(80, cfg)
    init.train()
    x = torch.from_numpy(feats.feats[0])[None]
    init(x, gen=torch.Generator().manual_seed(0))  # data-dependent codebook init, as in training
    before = evaluate_codec(init, feats.feats)["rel_mse"]
    metrics = train_codec(fb, fb, data / "exp", cfg)
    assert metrics["rel_mse"] < before - 0.05, (before, metrics)
    exp = data / "exp"
    assert (exp / "model.safetensors").is_file() and (exp / "reconstruction.png").stat().st_size > 1000
    rows = list(csv.DictReader((exp / "train_log.csv").open()))
    assert {r["split"] for r in rows} == {"train", "dev"} and "perplexity_2" in rows[0]
    assert all(0 < float(r["usage_1"]) <= 1 for r in rows if r["usage_1"])
    _, meta = load_codec(exp / "model.safetensors")
    assert meta["feat_dim"] == 80 and meta["normalization"] == "utterance_mvn" and meta["feature_type"] == "fbank"
    # a finished run is not redone
    r = run("train", "codec", "--train-cuts", fb, "--dev-cuts", fb, "-c", data / "tiny.yaml", "--exp-dir", exp, "--max-steps", 60, "--resume")
    assert r.exit_code == 0 and "nothing to do" in r.output
    r = run("train", "codec", "--train-cuts", fb, "--dev-cuts", fb, "-c", data / "tiny.yaml", "--exp-dir", exp, "--max-steps", 60)
    assert r.exit_code == 1 and "--resume" in r.output


def test_resume_gives_the_same_weights(data: Path) -> None:
    fb = data / "fbank" / "toy_cuts_train.jsonl.gz"
    r = run("train", "codec", "--train-cuts", fb, "--dev-cuts", fb, "-c", data / "tiny.yaml", "--exp-dir", data / "straight", "--max-steps", 20)
    assert r.exit_code == 0, r.output
    r = run("train", "codec", "--train-cuts", fb, "--dev-cuts", fb, "-c", data / "tiny.yaml", "--exp-dir", data / "resumed", "--max-steps", 20, "--stop-at", 10)
    assert r.exit_code == 0, r.output
    r = run("train", "codec", "--train-cuts", fb, "--dev-cuts", fb, "-c", data / "tiny.yaml", "--exp-dir", data / "resumed", "--max-steps", 20, "--resume")
    assert r.exit_code == 0 and "resuming" in r.output, r.output
    a = load_file(data / "straight" / "model.safetensors")
    b = load_file(data / "resumed" / "model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sset_tokens_and_codec_eval(data: Path) -> None:
    fb = data / "fbank" / "toy_cuts_train.jsonl.gz"
    ckpt = data / "straight" / "model.safetensors"
    if not ckpt.exists():
        run("train", "codec", "--train-cuts", fb, "--dev-cuts", fb, "-c", data / "tiny.yaml", "--exp-dir", data / "straight", "--max-steps", 20)
    r = run("extract-tokens", "--type", "sset", fb, "--out-dir", data / "sset", "--checkpoint", ckpt)
    assert r.exit_code == 0, r.output
    for c in CutSet.from_file(data / "sset" / "toy_cuts_train.jsonl.gz"):
        t = c.load_custom("sset")
        assert t.ndim == 2 and t.shape[1] == 2 and abs(t.shape[0] - c.num_frames / 2) <= 1 and 0 <= t.min() and t.max() < 32
        assert c.load_features().shape == (c.num_frames, 80)  # features kept next to the tokens
    info = json.loads((data / "sset" / "sset.json").read_text())
    assert info["num_codebooks"] == 2 and info["codebook_size"] == 32 and info["frame_shift"] == 0.02
    r = run("extract-tokens", "--type", "sset", fb, "--out-dir", data / "sset", "--checkpoint", ckpt)
    assert "nothing to do" in r.output
    r = run("codec-eval", fb, "--checkpoint", ckpt, "--train-cuts", fb, "--out", data / "eval.json")
    assert r.exit_code == 0, r.output
    res = json.loads((data / "eval.json").read_text())["results"]
    assert list(res) == ["SSET 1 book", "SSET 2 books", "k-means K=32", "k-means K=32, 2 frames stacked"]
    assert res["k-means K=32, 2 frames stacked"]["token_frame_shift"] == res["SSET 1 book"]["token_frame_shift"] == 0.02
    assert all(0 <= m["rel_mse"] < 1.5 and -1 <= m["cosine"] <= 1 for m in res.values())
    assert res["SSET 2 books"]["rel_mse"] <= res["SSET 1 book"]["rel_mse"] + 1e-6


def test_codec_rejects_features_of_another_dim(data: Path) -> None:
    ckpt = data / "straight" / "model.safetensors"
    extract([data / "toy_cuts_train.jsonl.gz"], ExtractOptions(type="fbank", out_dir=data / "fbank40", num_mel_bins=40))
    fb40 = data / "fbank40" / "toy_cuts_train.jsonl.gz"
    r = run("extract-tokens", "--type", "sset", fb40, "--out-dir", data / "sset40", "--checkpoint", ckpt)
    assert r.exit_code == 1 and "40-dim" in r.output and "80-dim" in r.output
    assert not (data / "sset40" / "toy_cuts_train.jsonl.gz").exists()
    r = run("extract-tokens", "--type", "sset", fb40, "--out-dir", data / "sset40", "--checkpoint", data / "tiny.yaml")
    assert r.exit_code == 1 and "tiny.yaml" in r.output
    r = run("train", "codec", "--train-cuts", data / "toy_cuts_train.jsonl.gz", "--dev-cuts", fb40, "-c", data / "tiny.yaml", "--exp-dir", data / "e2")
    assert r.exit_code == 1 and "has no features" in r.output


def test_config_typo_is_an_error(data: Path) -> None:
    (data / "typo.yaml").write_text("codebok_size: 64\n")
    fb = data / "fbank" / "toy_cuts_train.jsonl.gz"
    r = run("train", "codec", "--train-cuts", fb, "--dev-cuts", fb, "-c", data / "typo.yaml", "--exp-dir", data / "e3")
    assert r.exit_code == 1 and "codebook_size" in r.output


def test_resume_rules(data: Path) -> None:
    """--resume: an identical finished run is skipped, a larger max_steps continues, any other change is refused."""
    fb = data / "fbank" / "toy_cuts_train.jsonl.gz"
    args = ("train", "codec", "--train-cuts", fb, "--dev-cuts", fb, "-c", data / "tiny.yaml", "--exp-dir", data / "rules")
    assert run(*args, "--max-steps", 4).exit_code == 0
    r = run(*args, "--max-steps", 4, "--resume")
    assert r.exit_code == 0 and "nothing to do" in r.output, r.output
    r = run(*args, "--max-steps", 6, "--resume")
    assert r.exit_code == 0 and "resuming" in r.output and "at step 4" in r.output, r.output
    assert load_codec(data / "rules")[1]["step"] == 6
    (data / "lr.yaml").write_text((data / "tiny.yaml").read_text().replace("lr: 0.003", "lr: 0.001"))
    r = run("train", "codec", "--train-cuts", fb, "--dev-cuts", fb, "-c", data / "lr.yaml", "--exp-dir", data / "rules", "--max-steps", 8, "--resume")
    assert r.exit_code == 1 and "lr: 0.003 -> 0.001" in r.output and "use a new --exp-dir or delete" in r.output, r.output
    (data / "old.yaml").write_text((data / "tiny.yaml").read_text() + "steps: 10\n")
    r = run("train", "codec", "--train-cuts", fb, "--dev-cuts", fb, "-c", data / "old.yaml", "--exp-dir", data / "e4")
    assert r.exit_code == 1 and "unknown key 'steps', did you mean 'max_steps'?" in r.output


def test_streamed_sets_cache_within_their_budget():
    """LazySequence: each item loaded once while the cache holds it, never more than cache_bytes kept."""
    import numpy as np

    from polyspeech_cli.codec.data import LazySequence

    loads = []

    def load(i):
        loads.append(i)
        return np.full(256, i, dtype=np.float32)  # 1 KiB

    seq = LazySequence(10, load, cache_bytes=4 * 1024)
    for _ in range(3):
        assert [float(seq[i][0]) for i in range(4)] == [0.0, 1.0, 2.0, 3.0]
    assert loads == [0, 1, 2, 3]  # fits: read from storage once
    seq[4]  # evicts the least recently used (0)
    assert seq._cached_bytes <= 4 * 1024 and 0 not in seq._cache
    seq[0]
    assert loads == [0, 1, 2, 3, 4, 0]
    uncached = LazySequence(3, load)
    uncached[1], uncached[1]
    assert loads[-2:] == [1, 1]  # cache_bytes 0: loaded on every access
