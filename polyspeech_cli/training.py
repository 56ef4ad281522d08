"""Helpers every training loop shares (codec, LM, speech decoder): device, precision, CSV log,
the one resume/skip rule (`check_resume`) and the one-training-per-exp-dir lock (`exp_dir_lock`)."""

from __future__ import annotations

import contextlib
import csv
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import list_checkpoints, save_state_file
from polyspeech_cli.stamps import changed_keys, jsonable, read_stamp, stamp_key, write_stamp

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def pick_device(name: str) -> torch.device:
    """`auto` = this process's GPU when CUDA is visible, else the CPU. `auto` and a bare `cuda`
    mean GPU LOCAL_RANK under torchrun (one GPU per rank), GPU 0 otherwise; `cuda:N` is taken as given."""
    if name == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PolyspeechError(f"device '{name}' requested but no CUDA GPU is visible (use device: auto or cpu)")
    if name in ("auto", "cuda"):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU flags show bf16 matrix instructions (AVX512-BF16 or AMX-BF16), where
    torch's bf16 matmul is 2-3x its fp32 one; elsewhere bf16 is emulated and slower. A flag, not a
    timing probe, so the choice is the same in every run on one machine."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), [])
    except OSError:  # not Linux
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision (fp32, bf16 or fp16) that `precision` means on `device`.

    `auto`: on a GPU bf16 where supported, else fp16; on a CPU bf16 where the CPU has native bf16
    instructions (`cpu_has_native_bf16`), else fp32. The LM trainer writes the resolved value to the
    exp dir's config.yaml, so a re-run (or a resume elsewhere) uses, or is checked against, the same
    (the codec and speech-decoder trainers resolve it per run; their tiny configs say fp32).
    """
    if precision not in PRECISIONS:
        raise PolyspeechError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r} (fix the config)")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `precision` on `device` (None = fp32): see `resolve_precision`."""
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[resolve_precision(precision, device)]


def adamw(model: torch.nn.Module, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
          decay_vectors: bool = False, no_decay_names: tuple[str, ...] = ()) -> torch.optim.AdamW:
    """AdamW over `model`'s parameters, weight decay on its matrices only (biases and norm gains
    are not shrunk) unless `decay_vectors`, and never on parameters whose name contains one of
    `no_decay_names` (e.g. embeddings). Fused (one kernel over all tensors) on CPU and CUDA: on one
    CPU thread its step is several times faster than the per-tensor loop (`bench train` reports
    both), which was ~5% of an LM training step."""
    named = list(model.named_parameters())

    def decayed(name: str, p: torch.nn.Parameter) -> bool:
        return (decay_vectors or p.ndim >= 2) and not any(k in name for k in no_decay_names)

    groups = [{"params": [p for n, p in named if decayed(n, p)], "weight_decay": weight_decay},
              {"params": [p for n, p in named if not decayed(n, p)], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for _, p in named)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def optimizer_step(model: torch.nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, grad_clip: float) -> None:
    """Unscale, clip the gradient norm to `grad_clip`, step (skipped by the scaler on fp16 overflow), zero the gradients."""
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)


class CsvLog:
    """An append-only CSV training log; `fresh` starts it anew. A resumed run appends, after dropping
    the rows past `keep_until` (the resumed checkpoint's step: what the interrupted run logged after
    it is redone)."""

    def __init__(self, path: Path, fields: tuple[str, ...] | list[str], fresh: bool, keep_until: int | None = None) -> None:
        self.path, self.fields = Path(path), tuple(fields)
        if fresh or not self.path.exists():
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(self.fields)
        elif keep_until is not None:
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if not (r.get("step") or "").isdigit() or int(r["step"]) <= keep_until]
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, self.fields, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)

    def write(self, row: dict[str, Any] | None = None, **fields: Any) -> None:
        """Append one row (a dict and/or keywords; missing fields stay empty); floats get 5 significant digits."""
        row = {**(row or {}), **fields}
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self.fields, restval="", extrasaction="ignore").writerow(
                {k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in row.items()})


# ---- resume / skip ------------------------------------------------------------------------------
RUN_STAMP = "run.json"  # EXP/run.json: the config + train-cut identity of the run in EXP, and whether it finished
RUNTIME_KEYS = ("device", "threads", "cache_mb")  # where/how fast a run goes, not what it computes: may change on --resume
BUDGET_KEYS = ("max_steps",)  # may grow on --resume (the run continues); any other change is refused


def run_key(config: Any, train_cuts: Path | str) -> dict[str, Any]:
    """What a training run in an exp dir is: its config (minus RUNTIME_KEYS) and its train cuts' identity."""
    options = {k: v for k, v in jsonable(config).items() if k not in RUNTIME_KEYS}
    return stamp_key(options, [train_cuts])


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None  # type: ignore[assignment]
    return d


def check_resume(exp_dir: Path, key: dict[str, Any], resume: bool, last_checkpoint: Path | None,
                 budget_keys: tuple[str, ...] = BUDGET_KEYS) -> str:
    """The one rule of every trainer for an exp dir that may hold an earlier run; returns
    "fresh" (nothing to continue: train from step 0), "continue" (resume the last checkpoint) or
    "skip" (that exact run finished: nothing to do).

    Without --resume, existing checkpoints are an error (nothing is overwritten). With --resume the
    saved key (EXP/run.json, else EXP/config.yaml of older exp dirs) must equal `key` except for a
    larger value of a `budget_keys` entry (e.g. max_steps: the run continues); anything else
    (another config value, rewritten or other train cuts) is refused, naming the changed keys.
    """
    import yaml

    exp_dir = Path(exp_dir)
    if last_checkpoint is None:
        return "fresh"
    if not resume:
        raise PolyspeechError(f"{exp_dir} already holds checkpoints ({last_checkpoint.name}): pass --resume to continue, "
                              "or use a new --exp-dir")
    saved = read_stamp(exp_dir / RUN_STAMP)
    new = jsonable(key)
    if saved is not None and isinstance(saved.get("key"), dict):
        old = saved["key"]
    else:  # an exp dir from before run.json: compare the config only
        try:
            cfg = yaml.safe_load((exp_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            cfg = {}
        old = {"options": {k: v for k, v in jsonable(cfg).items() if k not in RUNTIME_KEYS}, "inputs": new["inputs"]}
    grown = False
    changes = []
    for change in changed_keys(old.get("options", {}), new["options"]):
        name = change.split(": ", 1)[0]
        if name in budget_keys:
            a, b = _get(old["options"], name), _get(new["options"], name)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > a:
                grown = True
                continue
        changes.append(change)
    if old.get("inputs") != new["inputs"]:
        paths = [i.get("path") for i in old.get("inputs", []) if isinstance(i, dict)]
        changes.append(f"train cuts: {', '.join(map(str, paths)) or '?'} -> {', '.join(i['path'] for i in new['inputs'])} (another or a rewritten file)")
    if changes:
        raise PolyspeechError(f"{exp_dir} holds a run with another config or data ({'; '.join(changes)}); it is not resumed with "
                              f"these settings: use a new --exp-dir or delete {exp_dir} (only a larger "
                              f"{'/'.join(budget_keys)} continues a run)")
    if saved is not None and saved.get("finished") and not grown and all(Path(p).exists() for p in saved.get("outputs", [])):
        return "skip"
    return "continue"


def mark_run(exp_dir: Path, key: dict[str, Any], finished: bool, outputs: list[Path] | tuple[Path, ...] = (), **extra: Any) -> None:
    """Record the run in EXP/run.json: at its start (finished=False) and at its end."""
    write_stamp(Path(exp_dir) / RUN_STAMP, key, outputs, finished=finished, **extra)


# ---- the checkpoint directory every trainer writes ------------------------------------------------
def save_checkpoint(exp_dir: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write `EXP/ckpt/step-N.safetensors` atomically (tensors in the file, every other value as JSON
    in its header: `fileio.save_state_file`), then delete all but the newest `keep_last`."""
    path = Path(exp_dir) / "ckpt" / f"step-{step:07d}.safetensors"
    save_state_file(path, state)
    for old in list_checkpoints(exp_dir)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def average_checkpoints(paths: list[Path], out: Path, read: Callable[[Path], dict[str, Any]]) -> Path:
    """Average the "model" weights of the checkpoints `paths` (read with `read`; float tensors; the
    others taken from the last) into `out`, a checkpoint without optimiser state."""
    if not paths:
        raise PolyspeechError(f"no checkpoints to average in {out.parent} (train first)")
    avg: dict[str, torch.Tensor] = {}
    for p in paths:
        model = read(p)["model"]
        for k, v in model.items():
            if v.is_floating_point():
                avg[k] = avg.get(k, torch.zeros_like(v, dtype=torch.float64)) + v.double() / len(paths)
            else:
                avg[k] = v
    last = read(paths[-1])
    last["model"] = {k: v.to(last["model"][k].dtype) for k, v in avg.items()}
    last["averaged"] = [p.name for p in paths]
    for key in ("optimizer", "scheduler", "scaler"):
        last.pop(key, None)
    save_state_file(out, last)
    return out


# ---- one training per exp dir -----------------------------------------------------------------------
LOCK_NAME = ".lock"  # EXP/.lock: flock-ed by the training that runs in EXP; holds "PID HOST"


def _lock_holder(fd: int) -> tuple[int | None, str]:
    """(pid, host) written into a lock file by its holder (it writes just after locking: wait a little)."""
    for _ in range(20):
        os.lseek(fd, 0, os.SEEK_SET)
        words = os.read(fd, 256).decode("utf-8", "replace").split()
        if words and words[0].isdigit():
            return int(words[0]), (words[1] if len(words) > 1 else "")
        time.sleep(0.05)
    return None, ""


@contextlib.contextmanager
def exp_dir_lock(exp_dir: Path) -> Iterator[None]:
    """Hold EXP/.lock while a training runs in `exp_dir`, so a second training started on the same
    --exp-dir stops with a one-line PolyspeechError naming the first one's pid instead of
    overwriting its checkpoints.

    The lock is `flock(LOCK_EX | LOCK_NB)` on EXP/.lock, so the OS releases it when the holder
    ends in any way (return, exception, Ctrl-C, kill -9): a lock file left behind by a killed run is
    taken over, never waited on. The holder writes "PID HOST" into it. On release the file is
    removed (while still locked; a contender that opened the old file re-opens the new one), and so
    are `exp_dir` and its parents where this call created them and nothing was written into them.

    Not re-entrant: a second `exp_dir_lock` on the same dir in the same process is refused too (one
    lock per training; under torchrun take it on rank 0 only: every rank is a process). Sequential
    trainings in one process each take and release it.
    """
    import fcntl

    exp_dir = Path(exp_dir)
    created = [d for d in (exp_dir, *exp_dir.parents) if not d.exists()]  # innermost first
    path = exp_dir / LOCK_NAME
    for _ in range(100):  # more than one round only when a finishing holder removes the file or dir meanwhile
        try:
            exp_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # a finishing holder removed the (empty) dir just now: make it again
            continue
        except (FileExistsError, NotADirectoryError):
            raise PolyspeechError(f"{exp_dir}: not a directory (pass --exp-dir a directory, new or of an earlier run)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, host = _lock_holder(fd)
            os.close(fd)
            here = socket.gethostname()
            if pid == os.getpid() and host in ("", here):
                raise PolyspeechError(f"this process already holds the lock of {exp_dir} ({path}): a training inside a training "
                                      "on the same --exp-dir; use another --exp-dir for the inner one") from None
            who = f"pid {pid}" if pid is not None else "pid unknown"
            who += f" on {host}" if host and host != here else ""
            raise PolyspeechError(f"another training ({who}) is running in {exp_dir}; wait for it or use another --exp-dir "
                                  f"(the lock {path} is released when that process ends)") from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder before us removes the file on release: if it did, lock the new file instead
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)
    else:
        raise PolyspeechError(f"could not take the lock {path}: it keeps being removed (is {exp_dir} being deleted?)")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before unlocking (closing), see the check above
        os.close(fd)
        for d in created:  # the dirs made here, while still empty (a training that wrote its files keeps them)
            try:
                d.rmdir()
            except OSError:
                break
