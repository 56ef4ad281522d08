"""`polyspeech bench all`: the training, tokenisation and decoding benchmarks in one run and one
report (`bench.json` + `bench.md`), in a few minutes on a CPU. With a trained LM exp dir the
decoding figures that depend on quality (TTS output length) are real; without, random-weight
models of the configs' shapes measure speed alone."""

from __future__ import annotations

import json
from pathlib import Path

from polyspeech_cli.decode.bench import bench as bench_decode
from polyspeech_cli.fileio import atomic_write_text
from polyspeech_cli.lm.bench import bench_train, markdown as train_markdown
from polyspeech_cli.tokens.bench import bench_tokens


def bench_all(train_cuts: Path, cuts: Path, out_dir: Path, lm_config: Path, codec_config: Path, exp_dir: Path | None = None,
              codec: Path | None = None, vocoder: Path | None = None, train_steps: int = 10, tasks: list[str] | None = None,
              log=print) -> dict:
    """Run the three benchmarks; write `out_dir/bench.json` and `out_dir/bench.md`; return the report."""
    overrides = {"tasks": tasks} if tasks else {}
    train = bench_train(lm_config, train_cuts, ["fp32", "bf16"], [1, 2], train_steps, 2, lanes=True, overrides=overrides, log=log)
    tokens = bench_tokens(cuts, codec, codec_config, 50, None)
    decode = bench_decode(exp_dir, cuts, lm_config, 100, 32, 8, None, codec, vocoder)
    report = {"train": train, "tokens": tokens, "decode": decode, "exp_dir": str(exp_dir) if exp_dir else None}
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "bench.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out_dir / "bench.md", markdown(report))
    return report


def markdown(report: dict) -> str:
    """Training table, then one row per tokenisation and decoding figure with its target."""
    tok, dec = report["tokens"], report["decode"]
    rows = [("fbank RTF (1 thread)", f"{tok['rtf']['fbank (audio → 80-dim fbank)']:.4f}", "≤ 0.01"),
            ("SSET tokens RTF (1 thread)", f"{tok['rtf']['SSET (fbank → tokens)']:.4f}", "≤ 0.01"),
            ("KV cache vs recompute, 100-token output", f"{dec['speedup']:.1f}×", "≥ 5×"),
            ("same, with transformers' own KV cache (the path before `decode/kv_cache.py`)", f"{dec['transformers_speedup']:.1f}×", ""),
            ("batched greedy ASR RTF (1 thread)", f"{dec['asr_rtf']:.4f}", "≤ 0.03")]
    if "tts_rtf" in dec:
        rows.append(("TTS RTF end to end (1 thread)", f"{dec['tts_rtf']:.3f}", "≤ 0.1"))
    lines = ["### Training (`bench train`)", "", train_markdown(report["train"]), "### Tokenisation and decoding", "",
             "| figure | measured | target |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lm = f"trained: {report['exp_dir']}" if report.get("exp_dir") else "random weights of the config's shape"
    return "\n".join(lines) + f"\n\nDecoding LM: {dec['params_m']:.2f} M parameters ({lm}).\n"
