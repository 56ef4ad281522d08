"""`polyspeech bench train`: the FLOP count matches torch's own counter, and the report holds sane numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lhotse import CutSet
from test_lm import _make_cuts, tiny_cfg

from polyspeech_cli.config import save_config
from polyspeech_cli.lm.bench import Variant, markdown, run_variant, step_flops
from polyspeech_cli.lm.checkpoint import build_model
from polyspeech_cli.lm.data import TaskDataset
from polyspeech_cli.lm.vocab import VocabConfig, build_vocab

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cuts_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("benchdata")
    _make_cuts(root)
    return root / "cuts.jsonl.gz"


@pytest.mark.parametrize(("task", "adapter", "encoder_layers"), [
    ("asr", "stack", 0), ("tts", "stack", 0), ("lid", "stack", 0),
    # the conv2d adapter + a bidirectional speech encoder (CTC on the encoder's states)
    ("asr", "conv2d", 2), ("lid", "conv2d", 2),
])
def test_counted_flops_match_torchs_flop_counter(cuts_path, tmp_path, task, adapter, encoder_layers):
    from torch.utils.flop_counter import FlopCounterMode

    cfg = tiny_cfg()
    cfg.model.adapter, cfg.model.encoder_layers = adapter, encoder_layers
    cuts = CutSet.from_file(cuts_path)
    texts = [c.supervisions[0].text for c in cuts]
    vocab = build_vocab(texts, {c.supervisions[0].language for c in cuts}, VocabConfig(), tmp_path, "kmeans", 16, 1)
    model = build_model(cfg, vocab, 80)
    model.llm.config._attn_implementation = "eager"  # explicit matmuls, which the counter sees (SDPA on CPU it does not)
    if model.adapter.encoder is not None:
        model.adapter.encoder.config._attn_implementation = "eager"
    batch = TaskDataset(task, vocab, cfg.data)[cuts]
    counter = FlopCounterMode(display=False)
    with counter:
        model(batch)["loss"].backward()
    counted, real, computed = step_flops(model, batch)
    # torch counts every matmul of forward + backward; ours is 3x forward over the padded batch.
    assert counted == pytest.approx(counter.get_total_flops(), rel=0.03)
    assert 0 < real <= computed


def test_variant_report(cuts_path, tmp_path):
    cfg = tiny_cfg()
    cfg.device = "cpu"
    save_config(cfg, tmp_path / "cfg.yaml")
    r = run_variant(cfg, cuts_path, Variant("fp32", 1), steps=4, warmup=1)
    assert r["flops_per_s"] > 0 and 0 < r["mfu"] < 1.5 and r["matmul_peak_flops"] > 1e9
    assert 0 <= r["padding"] < 1 and 0 < r["data_wait"] < 1 and r["peak_rss_mb"] > 0
    assert sum(t["steps"] for t in r["tasks"].values()) == 4
    table = markdown({"variants": [r]})
    assert "fp32, 1 thread" in table and "MFU" in table
    assert r["adamw_ms"]["fused"] > 0 and r["adamw_ms"]["per_tensor"] > 0 and "AdamW step" in table
    json.dumps(r)  # the report is plain JSON


def test_bench_all_writes_one_report(cuts_path, tmp_path, run_cli):
    cfg = tiny_cfg()
    cfg.device = "cpu"
    save_config(cfg, tmp_path / "lm.yaml")
    r = run_cli("bench", "all", "--train-cuts", cuts_path, "--cuts", cuts_path, "--out-dir", tmp_path / "bench", "-c", tmp_path / "lm.yaml",
                "--codec-config", Path(__file__).resolve().parents[1] / "conf" / "codec_tiny.yaml", "--train-steps", "2")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert {"train", "tokens", "decode"} <= set(report) and len(report["train"]["variants"]) == 4 and "lanes" in report["train"]
    assert report["decode"]["cached_equals_recompute"] and report["tokens"]["rtf"]["fbank + SSET"] > 0
    md = (tmp_path / "bench" / "bench.md").read_text()
    assert "KV cache" in md and "MFU" in md
