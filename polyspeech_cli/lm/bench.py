"""`polyspeech bench train`: how close an LM training step is to what the machine can do.

For each variant (precision x threads, and 2 lanes of 1 thread) it trains the LM of a config on
real batches of a cut set for a fixed number of steps after a warm-up and reports, per task and
overall: achieved FLOP/s counted from what the step computes, MFU against a large matmul measured
in the same process and dtype, tokens/s and seconds of speech per second, the share of computed
positions that are padding, the share of step time spent waiting for data, and peak RSS.

FLOPs of one training step (forward + backward = 3x forward), counted over the padded batch:
- decoder layers: 2 x (q, k, v, o and MLP weights) per computed position, plus attention scores
  and values 2 x 2 x L^2 x d per row and layer;
- speech-encoder layers (`encoder_layers`): the same per-position weights over the encoder's
  padded positions (B x T', T' = the adapter's output length of the padded features), plus
  bidirectional attention scores and values 2 x 2 x T'^2 x d per row and layer;
- the speech adapter per computed adapter frame: the stack adapter's two Linears, or the conv2d
  adapter's two 3x3 stride-2 convolutions (2 x 9 x C_in x C_out per output pixel) and its Linear;
  the adapter's first layer (Linear or conv) needs no gradient of its input (the features): 2x, not 3x;
- the CTC head per speech position (ASR; the encoder's positions when there is an encoder, else the
  decoder's speech positions), and `lm_head` only where the loss is taken (the output tokens).
`tests/test_bench_train.py` checks the count against torch's FlopCounterMode (eager attention).
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from polyspeech_cli.data.manifest import read_cuts
from polyspeech_cli.lm.checkpoint import build_model
from polyspeech_cli.lm.config import TrainConfig
from polyspeech_cli.lm.data import TaskDataset, TaskStream, to_device
from polyspeech_cli.lm.model import PolySpeechLM
from polyspeech_cli.lm.tasks import TASKS
from polyspeech_cli.lm.train import batch_seconds, draw_task, lm_data
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.training import adamw, autocast_dtype, cpu_has_native_bf16, optimizer_step, pick_device
from polyspeech_cli.training_loop import quiet


@dataclass
class Variant:
    precision: str  # fp32 | bf16 | fp16
    threads: int

    @property
    def name(self) -> str:
        return f"{self.precision}, {self.threads} thread{'s' if self.threads > 1 else ''}"


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, repeat: int = 5) -> float:
    """FLOP/s of the best of `repeat` n x n matmuls in `dtype` (the dense peak this process reaches)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.matmul(a, b)  # warm-up (threads, kernels)
    best = float("inf")
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(model: PolySpeechLM, batch: dict) -> tuple[float, int, int]:
    """(training FLOPs, real positions, computed positions) of one batch (see the module doc)."""
    cfg, llm_cfg = model.cfg, model.llm.config
    d, ff, layers = cfg.d_model, cfg.d_ff, cfg.n_layers
    d_kv = d * cfg.n_kv_heads // cfg.n_heads
    per_position = 2 * (2 * d * d + 2 * d * d_kv + 3 * d * ff)  # one Llama layer's weights
    rows = len(batch["prefix"])
    n_speech = [0] * rows
    frames = 0  # the adapter's padded output length T'
    if batch.get("feats") is not None:
        frames = model.adapter.out_len(batch["feats"].shape[1])
        n_speech = [min(model.adapter.out_len(int(n)), frames) for n in batch["feat_lens"]]
    lens = [p.numel() + s + q.numel() for p, s, q in zip(batch["prefix"], n_speech, batch["suffix"])]
    width = max(lens)
    computed = rows * width
    forward = layers * (computed * per_position + rows * 4 * width * width * d)
    forward += 2 * d * llm_cfg.vocab_size * sum(q.numel() - 1 for q in batch["suffix"])  # lm_head on the loss positions
    first_layer = 0  # the adapter's first layer needs no gradient of its input (the features): 2x, not 3x
    if model.adapter is not None and frames:
        feats = batch["feats"]
        adapter_frames = rows * frames
        if cfg.adapter == "stack":
            first_layer = adapter_frames * 2 * feats.shape[-1] * cfg.stack * d
            forward += first_layer + adapter_frames * 2 * d * d
        elif cfg.adapter == "conv2d":
            t, f, convs = feats.shape[1], feats.shape[-1], []
            for conv in model.adapter.conv[::2]:  # 3x3 stride 2, no padding
                t, f = (t - 1) // 2, (f - 1) // 2
                convs.append(rows * t * f * 2 * conv.weight.numel())  # 2 x 3 x 3 x C_in x C_out per output pixel
            first_layer = convs[0]
            forward += sum(convs)
            forward += adapter_frames * 2 * model.adapter.proj.in_features * d
        if model.adapter.encoder is not None:  # bidirectional layers over the T' padded positions
            forward += cfg.encoder_layers * (adapter_frames * per_position + rows * 4 * frames * frames * d)
    if model.ctc_head is not None and batch.get("ctc_targets") is not None:
        # ctc_logprobs pads the speech spans (decoder's or encoder's) to the longest one.
        forward += 2 * d * model.ctc_head.out_features * rows * max(n_speech)
    return 3.0 * forward - first_layer, sum(lens), computed


def run_variant(cfg: TrainConfig, train_cuts: Path, variant: Variant, steps: int, warmup: int) -> dict:
    """Train `warmup + steps` steps in this process and measure the last `steps`."""
    torch.set_num_threads(variant.threads)
    device = pick_device(cfg.device)
    amp = autocast_dtype(variant.precision, device)
    data = lm_data(cfg, read_cuts(Path(train_cuts), "train cuts"), Path(train_cuts), log=quiet)  # as `train lm` derives them
    task_cuts, vocab, feat_dim, probs = data.task_cuts, data.vocab, data.feat_dim, data.probs
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, vocab, feat_dim).to(device).train()
    opt = adamw(model, cfg.lr, cfg.weight_decay, (0.9, 0.98), no_decay_names=("embed",))  # as `train lm` builds it
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    streams = {t: TaskStream(task_cuts[t], batch_seconds(cfg, t), cfg.num_buckets, cfg.seed + TASKS.index(t)) for t in cfg.tasks}
    datasets = {t: TaskDataset(t, vocab, cfg.data, model.feat_stats.cpu()) for t in cfg.tasks}
    rng = random.Random(cfg.seed)
    per_task: dict[str, dict[str, float]] = {}
    # Warm-up: one step of every task first (its sampler's start-up and first kernels), then random ones.
    schedule = list(cfg.tasks) + [draw_task(rng, probs) for _ in range(warmup + steps)]
    warmup += len(cfg.tasks)
    for step, task in enumerate(schedule):
        _sync(device)
        t0 = time.perf_counter()
        cpu_batch = datasets[task][next(streams[task])]
        batch = to_device(cpu_batch, device)
        t_data = time.perf_counter() - t0
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = model(batch)
        scaler.scale(out["loss"]).backward()
        optimizer_step(model, opt, scaler, cfg.grad_clip)
        _sync(device)
        t_step = time.perf_counter() - t0
        if step < warmup:
            continue
        flops, real, computed = step_flops(model, cpu_batch)
        acc = per_task.setdefault(task, dict.fromkeys(("steps", "seconds", "data_seconds", "flops", "real", "computed", "speech_s"), 0.0))
        for k, v in (("steps", 1), ("seconds", t_step), ("data_seconds", t_data), ("flops", flops), ("real", real),
                     ("computed", computed), ("speech_s", cpu_batch["duration"])):
            acc[k] += v
    dtype = amp or torch.float32
    peak = matmul_peak(dtype, device)
    total = {k: sum(a[k] for a in per_task.values()) for k in next(iter(per_task.values()))}

    def summary(a: dict[str, float]) -> dict[str, float]:
        return {"steps": int(a["steps"]), "step_ms": 1000 * a["seconds"] / a["steps"], "flops_per_s": a["flops"] / a["seconds"],
                "mfu": a["flops"] / a["seconds"] / peak, "tokens_per_s": a["real"] / a["seconds"],
                "speech_s_per_s": a["speech_s"] / a["seconds"], "padding": 1 - a["real"] / a["computed"],
                "data_wait": a["data_seconds"] / a["seconds"]}

    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"variant": variant.name, "precision": variant.precision, "threads": variant.threads, "device": str(device),
              "matmul_peak_flops": peak, "params": model.num_params(), "peak_rss_mb": rss_kib / 1024,
              **summary(total), "tasks": {t: summary(a) for t, a in sorted(per_task.items())}}
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result["adamw_ms"] = optimizer_ms(model)
    return result


def optimizer_ms(model: torch.nn.Module, repeat: int = 10) -> dict[str, float]:
    """ms per AdamW step over a copy of `model`'s parameters (random gradients): fused, as training
    runs it, and torch's default per-tensor loop (what training ran before)."""
    import copy

    out = {}
    for name, fused in (("fused", True), ("per_tensor", False)):
        m = copy.deepcopy(model)
        for p in m.parameters():
            p.grad = torch.randn_like(p)
        opt = adamw(m, 1e-3, 0.01) if fused else torch.optim.AdamW(m.parameters(), lr=1e-3, foreach=False)
        opt.step()
        t = time.perf_counter()
        for _ in range(repeat):
            opt.step()
        out[name] = 1000 * (time.perf_counter() - t) / repeat
    return out


def _variant_subprocess(config: Path, train_cuts: Path, variant: Variant, steps: int, warmup: int, overrides: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "polyspeech_cli.lm.bench", str(config), str(train_cuts), variant.precision, str(variant.threads),
           str(steps), str(warmup), json.dumps(overrides)]
    env = {**os.environ, "OMP_NUM_THREADS": str(variant.threads)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


USER_ERROR_EXIT = 3  # a variant subprocess that stopped on a PolyspeechError: its last stderr line is the message
USER_ERROR_PREFIX = "polyspeech bench error: "

BF16_SKIPPED = ("this CPU has no native bf16 instructions (no avx512_bf16 or amx_bf16 flag in /proc/cpuinfo), so torch "
                "would emulate bf16 at a fraction of the fp32 speed for minutes; `precision: auto` trains in fp32 here")


def _collect(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    if proc.returncode == USER_ERROR_EXIT:
        lines = [ln for ln in err.splitlines() if ln.startswith(USER_ERROR_PREFIX)]
        if lines:  # bad input (config, cuts) found in the variant's process: the same one-line error here
            raise PolyspeechError(lines[-1][len(USER_ERROR_PREFIX):])
    if proc.returncode != 0:
        raise RuntimeError(f"bench variant failed:\n{err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def emulated_bf16(device: torch.device) -> bool:
    """True where bf16 would be emulated (a CPU without native bf16 instructions): its variants are skipped."""
    return device.type == "cpu" and not cpu_has_native_bf16()


def bench_train(config: Path, train_cuts: Path, precisions: list[str], threads: list[int], steps: int, warmup: int,
                lanes: bool = True, overrides: dict | None = None, log=print, skip_emulated_bf16: bool = True) -> dict:
    """Every variant in its own process (one after the other), then 2 lanes of 1 thread side by side.

    The config is read (and the device picked) here first, so a bad config is a one-line error
    before any variant starts. On a CPU without native bf16 (`emulated_bf16`) the bf16 variants are
    skipped (unless `skip_emulated_bf16=False`) and the report says so (`skipped`, and a line in the
    markdown)."""
    overrides = overrides or {}
    device = pick_device(load_bench_config(Path(config), overrides).device)
    skip_bf16 = skip_emulated_bf16 and "bf16" in precisions and emulated_bf16(device)
    variants = [Variant(p, n) for p in precisions for n in threads]
    skipped = [v.name for v in variants if skip_bf16 and v.precision == "bf16"]
    variants = [v for v in variants if v.name not in skipped]
    if skipped:
        log(f"bench train: skipping {', '.join(skipped)}: {BF16_SKIPPED}")
        if not variants:
            raise PolyspeechError(f"bench train: nothing to measure: the bf16 variants are skipped ({BF16_SKIPPED}); "
                                  "pass --precisions fp32 (or fp32,bf16)")
    results = []
    for v in variants:
        log(f"bench train: {v.name} ...")
        results.append(_collect(_variant_subprocess(config, train_cuts, v, steps, warmup, overrides)))
    report: dict = {"config": str(config), "train_cuts": str(train_cuts), "steps": steps, "warmup": warmup, "variants": results}
    if skipped:
        report["skipped"] = {"variants": skipped, "reason": BF16_SKIPPED}
    if lanes:
        log("bench train: 2 lanes of fp32, 1 thread, side by side ...")
        procs = [_variant_subprocess(config, train_cuts, Variant("fp32", 1), steps, warmup, overrides) for _ in range(2)]
        lane_results = [_collect(p) for p in procs]
        report["lanes"] = {"lanes": 2, "tokens_per_s": sum(r["tokens_per_s"] for r in lane_results),
                           "speech_s_per_s": sum(r["speech_s_per_s"] for r in lane_results),
                           "step_ms": [r["step_ms"] for r in lane_results]}
    base = next((r for r in results if r["precision"] == "fp32" and r["threads"] == 1), None)
    if base:
        report["ratios_vs_fp32_1thread"] = {r["variant"]: r["tokens_per_s"] / base["tokens_per_s"] for r in results}
        if lanes:
            report["ratios_vs_fp32_1thread"]["2 lanes x fp32, 1 thread"] = report["lanes"]["tokens_per_s"] / base["tokens_per_s"]
    return report


def markdown(report: dict) -> str:
    """The report as a markdown table (one row per variant, then the lanes)."""
    lines = ["| variant | step ms | tokens/s | speech s/s | GFLOP/s | matmul peak GFLOP/s | MFU | padding | data wait | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["variants"]:
        lines.append(f"| {r['variant']} | {r['step_ms']:.0f} | {r['tokens_per_s']:.0f} | {r['speech_s_per_s']:.1f} | "
                     f"{r['flops_per_s'] / 1e9:.1f} | {r['matmul_peak_flops'] / 1e9:.1f} | {100 * r['mfu']:.1f}% | "
                     f"{100 * r['padding']:.1f}% | {100 * r['data_wait']:.1f}% | {r['peak_rss_mb']:.0f} |")
    if "lanes" in report:
        ln = report["lanes"]
        lines.append(f"| 2 lanes x fp32, 1 thread | {' / '.join(f'{s:.0f}' for s in ln['step_ms'])} | {ln['tokens_per_s']:.0f} | "
                     f"{ln['speech_s_per_s']:.1f} | | | | | | |")
    per_task = ["", "| task (first variant) | steps | step ms | tokens/s | MFU | padding | data wait |", "|---|---|---|---|---|---|---|"]
    for t, r in report["variants"][0]["tasks"].items():
        per_task.append(f"| {t} | {r['steps']} | {r['step_ms']:.0f} | {r['tokens_per_s']:.0f} | {100 * r['mfu']:.1f}% | "
                        f"{100 * r['padding']:.1f}% | {100 * r['data_wait']:.1f}% |")
    base = next((r for r in report["variants"] if "adamw_ms" in r), None)
    if base:
        a = base["adamw_ms"]
        per_task += ["", f"AdamW step over the LM's parameters ({base['variant']}): fused {a['fused']:.1f} ms, "
                         f"torch's per-tensor loop (before) {a['per_tensor']:.1f} ms, {a['per_tensor'] / a['fused']:.1f}× "
                         f"({a['per_tensor'] - a['fused']:.0f} ms of the {base['step_ms']:.0f} ms step saved)."]
    if report.get("skipped"):
        per_task += ["", f"Not measured: {'; '.join(report['skipped']['variants'])} ({report['skipped']['reason']})."]
    return "\n".join(lines + per_task) + "\n"


def load_bench_config(config: Path, overrides: dict) -> TrainConfig:
    """The config with top-level `overrides` (e.g. tasks, device) and `speech_tokens` (a data key) applied."""
    from polyspeech_cli.config import load_config

    overrides = dict(overrides)
    speech_tokens = overrides.pop("speech_tokens", None)
    cfg = load_config(config, TrainConfig, overrides)
    if speech_tokens:
        cfg.data.speech_tokens = speech_tokens
    return cfg


def _main() -> None:
    """Subprocess entry: CONFIG CUTS PRECISION THREADS STEPS WARMUP OVERRIDES_JSON -> one JSON line."""
    config, cuts, precision, threads, steps, warmup, overrides = sys.argv[1:8]
    try:
        cfg = load_bench_config(Path(config), json.loads(overrides))
        result = run_variant(cfg, Path(cuts), Variant(precision, int(threads)), int(steps), int(warmup))
    except PolyspeechError as e:  # bad input, not a bug: one line for the parent to raise again (`_collect`)
        print(USER_ERROR_PREFIX + " ".join(str(e).split()), file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
