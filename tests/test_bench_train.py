"""`polyspeech bench train`: the FLOP count matches torch's own counter, and the report holds sane numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lhotse import CutSet
from test_lm import _make_cuts, tiny_cfg

from polyspeech_cli.config import save_config
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.lm import bench as lm_bench
from polyspeech_cli.lm.bench import Variant, bench_train, markdown, run_variant, step_flops
from polyspeech_cli.lm.checkpoint import build_model
from polyspeech_cli.lm.data import TaskDataset
from polyspeech_cli.lm.vocab import VocabConfig, build_vocab

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cuts_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("benchdata")
    _make_cuts(root)
    return root / "cuts.jsonl.gz"


@pytest.mark.parametrize(("task", "adapter", "encoder_layers", "stack"), [
    ("asr", "stack", 0, 4), ("tts", "stack", 0, 4), ("lid", "stack", 0, 4),
    # the conv2d adapter (4x and 8x) + a bidirectional speech encoder (CTC on the encoder's states)
    ("asr", "conv2d", 2, 4), ("lid", "conv2d", 2, 4), ("asr", "conv2d", 2, 8),
])
def test_counted_flops_match_torchs_flop_counter(cuts_path, tmp_path, task, adapter, encoder_layers, stack):
    from torch.utils.flop_counter import FlopCounterMode

    cfg = tiny_cfg()
    cfg.model.adapter, cfg.model.encoder_layers, cfg.model.stack = adapter, encoder_layers, stack
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
    # The bf16 variants run where the CPU has native bf16 and are skipped (and reported) where it would emulate
    # them: forced on an fp32-only CPU, their 2 steps took minutes (test_bf16_is_skipped... covers the skip itself).
    native = lm_bench.cpu_has_native_bf16()
    cfg = tiny_cfg()
    cfg.device = "cpu"
    save_config(cfg, tmp_path / "lm.yaml")
    r = run_cli("bench", "all", "--train-cuts", cuts_path, "--cuts", cuts_path, "--out-dir", tmp_path / "bench", "-c", tmp_path / "lm.yaml",
                "--codec-config", Path(__file__).resolve().parents[1] / "conf" / "codec_tiny.yaml", "--train-steps", "2")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert {"train", "tokens", "decode"} <= set(report) and "lanes" in report["train"]
    assert len(report["train"]["variants"]) == (4 if native else 2) and bool(report["train"].get("skipped")) != native
    assert report["decode"]["cached_equals_recompute"] and report["tokens"]["rtf"]["fbank + SSET"] > 0
    md = (tmp_path / "bench" / "bench.md").read_text()
    assert "KV cache" in md and "MFU" in md


def _cpu_cfg(tmp_path: Path) -> Path:
    cfg = tiny_cfg()
    cfg.device = "cpu"
    save_config(cfg, tmp_path / "lm.yaml")
    return tmp_path / "lm.yaml"


def _one_error_line(r) -> str:
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return " ".join(r.output.split())


def test_bf16_is_skipped_where_the_cpu_would_emulate_it(cuts_path, tmp_path, run_cli, monkeypatch):
    """issue 22: no native bf16 (no avx512_bf16/amx_bf16 flag) -> the bf16 variants are not run, and the report says so."""
    monkeypatch.setattr(lm_bench, "cpu_has_native_bf16", lambda: False)
    cfg, out = _cpu_cfg(tmp_path), tmp_path / "bench" / "train.json"
    r = run_cli("bench", "train", "-c", cfg, "--train-cuts", cuts_path, "--precisions", "fp32,bf16", "--threads", "1", "--no-lanes",
                "--steps", "1", "--warmup", "0", "--out", out)
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert [v["variant"] for v in report["variants"]] == ["fp32, 1 thread"]
    assert report["skipped"]["variants"] == ["bf16, 1 thread"] and "no native bf16" in report["skipped"]["reason"]
    md = out.with_suffix(".md").read_text()
    assert "Not measured: bf16, 1 thread" in " ".join(md.split()) and "skipping bf16, 1 thread" in " ".join(r.output.split())
    # only bf16 asked for: nothing left to measure is a one-line error, not an empty report
    r = run_cli("bench", "train", "-c", cfg, "--train-cuts", cuts_path, "--precisions", "bf16", "--threads", "1", "--no-lanes")
    assert "nothing to measure" in _one_error_line(r) and "--precisions fp32" in _one_error_line(r)
    # with native bf16 (or on a GPU) nothing is skipped
    monkeypatch.setattr(lm_bench, "cpu_has_native_bf16", lambda: True)
    assert not lm_bench.emulated_bf16(torch.device("cpu")) and not lm_bench.emulated_bf16(torch.device("cuda", 0))


def test_bad_input_is_one_line_not_a_traceback(cuts_path, tmp_path, run_cli, monkeypatch):
    """issue 22: `bench all` from egs/mini with its default -c conf/lm_tiny.yaml (not there) ended in a traceback of the
    variant subprocess whose last line was the PolyspeechError; every input is now checked first, in this process."""
    cfg = _cpu_cfg(tmp_path)
    run_dir = tmp_path / "egs" / "mini"
    run_dir.mkdir(parents=True)
    monkeypatch.chdir(run_dir)
    r = run_cli("bench", "all", "--train-cuts", cuts_path, "--cuts", cuts_path, "--out-dir", tmp_path / "bench")
    assert "LM config not found: conf/lm_tiny.yaml" in _one_error_line(r) and "../../conf/lm_tiny.yaml" in r.output
    r = run_cli("bench", "all", "--train-cuts", cuts_path, "--cuts", cuts_path, "-c", cfg, "--out-dir", tmp_path / "bench")
    assert "codec config not found: conf/codec_tiny.yaml" in _one_error_line(r)
    assert not (tmp_path / "bench").exists()
    # the library call reads the config in the caller's process too
    with pytest.raises(PolyspeechError, match="config file not found: conf/lm_tiny.yaml"):
        bench_train(Path("conf/lm_tiny.yaml"), cuts_path, ["fp32"], [1], 1, 0, lanes=False, log=lambda *a: None)
    # bad input found inside a variant's process (here: no cut has these TTS tokens) comes back as the same one line
    r = run_cli("bench", "train", "-c", cfg, "--train-cuts", cuts_path, "--tasks", "tts", "--speech-tokens", "nosuch",
                "--precisions", "fp32", "--threads", "1", "--no-lanes", "--steps", "1", "--warmup", "0")
    assert "task 'tts' needs cuts" in _one_error_line(r)
