"""The trainer skeleton (`training_loop`) with a toy model supplied through its callbacks: early
stopping, keep-last checkpoints and averaging, resume (= uninterrupted) and the resume/skip rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import load_state_file
from polyspeech_cli.fileio import list_checkpoints
from polyspeech_cli.training import run_key
from polyspeech_cli.training_loop import (
    Dev,
    EarlyStopping,
    Loop,
    average_last,
    finish_loop,
    finish_run,
    resume_decision,
    run_loop,
    save_state,
    start_run,
)


def read(path: Path) -> dict:
    return load_state_file(path, "toy", "toy checkpoint", "train it", "the test")


@dataclass
class ToyConfig:
    max_steps: int = 10
    lr: float = 0.1


class Toy:
    """y = w x on a fixed batch per step; SGD; the dev metric is a scripted list of errors (or the loss)."""

    def __init__(self, exp: Path, keep_last: int = 0, dev_errors: list[float] | None = None) -> None:
        torch.manual_seed(0)
        self.exp, self.keep_last, self.dev_errors = exp, keep_last, dev_errors
        self.w = torch.nn.Linear(3, 1)
        self.opt = torch.optim.SGD(self.w.parameters(), lr=0.1)
        self.dev_steps: list[int] = []
        self.logged: list[int] = []

    def train_step(self, step: int) -> float:
        g = torch.Generator().manual_seed(step)
        x = torch.randn(8, 3, generator=g)
        loss = ((self.w(x).squeeze(-1) - x.sum(-1)) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def after_step(self, step: int, loss: float) -> str:
        self.logged.append(step)
        return f"loss {loss:.3f}"

    def dev(self, step: int) -> dict[str, float]:
        self.dev_steps.append(step)
        err = self.dev_errors[len(self.dev_steps) - 1] if self.dev_errors else 0.0
        return {"err": err}

    def checkpoint(self, step: int, stopper: EarlyStopping | None = None) -> None:
        save_state(self.exp, step, "toy", {"model": self.w.state_dict(), "optimizer": self.opt.state_dict(), "step": step,
                                           "best": stopper.state if stopper else None}, self.keep_last)

    def load(self, path: Path) -> int:
        state = read(path)
        self.w.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        return state["step"]

    def loop(self, max_steps: int, checkpoint_every: int, dev_every: int = 0, stopper: EarlyStopping | None = None) -> Loop:
        return Loop("toy", max_steps, self.train_step, self.after_step, lambda s: self.checkpoint(s, stopper), checkpoint_every,
                    dev=[Dev(dev_every, self.dev)], stopper=stopper)


def test_early_stopping_keeps_the_best_step_and_weights(tmp_path):
    toy = Toy(tmp_path, dev_errors=[5.0, 4.0, 4.5, 3.0, 3.5, 3.2, 9.0, 9.0])
    lines: list[str] = []
    stopper = EarlyStopping(2, lambda m: m.get("err"), lambda: {k: v.clone() for k, v in toy.w.state_dict().items()})
    loop = toy.loop(max_steps=100, checkpoint_every=0, dev_every=2, stopper=stopper)
    end = run_loop(loop, 0, 100, lines.append, progress=False)
    # dev at 2, 4, 6, 8, 10, 12: best 3.0 at step 8, then 3.5 and 3.2 are no better: stop at 12
    assert toy.dev_steps == [2, 4, 6, 8, 10, 12] and end.step == 12 and end.stopped and stopper.stopped
    assert stopper.state["step"] == 8 and stopper.state["error"] == 3.0 and stopper.state["bad"] == 2
    assert any("early stop at step 12" in line and "best 3.0000 at step 8" in line for line in lines)
    best = stopper.state["model"]
    assert not torch.equal(best["weight"], toy.w.weight.detach())  # the snapshot, not the last weights
    # A run resumed with the stopped state does not train on.
    again = EarlyStopping(2, lambda m: m.get("err"), dict)
    again.state.update(stopper.state)
    assert run_loop(toy.loop(100, 0, 2, again), 12, 100, lines.append, progress=False).step == 12
    # patience 0: never stops, metrics are ignored
    off = EarlyStopping(0, lambda m: m.get("err"), dict)
    toy2 = Toy(tmp_path / "b", dev_errors=[1.0] * 10)
    assert run_loop(toy2.loop(20, 0, 2, off), 0, 20, lines.append, progress=False).step == 20 and not off.stopped


def test_keep_last_dev_interval_and_the_last_step(tmp_path):
    toy = Toy(tmp_path, keep_last=2)
    loop = toy.loop(max_steps=10, checkpoint_every=3, dev_every=4)
    end = run_loop(loop, 0, 10, print, progress=False)
    assert toy.logged == list(range(1, 11)) and toy.dev_steps == [4, 8]  # not at max_steps (Dev.at_max is off)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000006.safetensors", "step-0000009.safetensors"]
    finish_loop(loop, end)  # the last step's dev evaluation and checkpoint
    assert toy.dev_steps == [4, 8, 10]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000009.safetensors", "step-0000010.safetensors"]
    assert read(list_checkpoints(tmp_path)[-1])["kind"] == "toy"
    avg = read(average_last(tmp_path, 2, read))["model"]
    a, b = (read(p)["model"] for p in list_checkpoints(tmp_path))
    assert torch.allclose(avg["weight"], (a["weight"] + b["weight"]) / 2) and "optimizer" not in read(tmp_path / "ckpt" / "avg-2.safetensors")
    assert average_last(tmp_path, 1, read) is None
    # Already evaluated and checkpointed at its last step (a stop on both intervals): not again.
    toy2 = Toy(tmp_path / "b")
    loop2 = toy2.loop(max_steps=10, checkpoint_every=4, dev_every=4)
    end2 = run_loop(loop2, 0, 8, print, progress=False)
    mtime = list_checkpoints(tmp_path / "b")[-1].stat().st_mtime_ns
    finish_loop(loop2, end2)
    assert toy2.dev_steps == [4, 8] and list_checkpoints(tmp_path / "b")[-1].stat().st_mtime_ns == mtime
    # No step taken (a finished run resumed): nothing, unless `always`.
    end3 = run_loop(loop2, 8, 8, print, progress=False)
    finish_loop(loop2, end3)
    assert toy2.dev_steps == [4, 8]
    finish_loop(loop2, end3, always=True)
    assert toy2.dev_steps == [4, 8, 8]


def test_resume_equals_uninterrupted_and_the_resume_rule(tmp_path):
    cfg, cuts = ToyConfig(), tmp_path / "cuts.txt"
    cuts.write_text("toy data\n")
    key = run_key(cfg, cuts)

    def train(exp: Path, stop_at: int | None, resume: bool, lines: list[str]) -> Toy:
        toy = Toy(exp, keep_last=3)
        decision, ckpts = resume_decision(exp, key, resume, lines.append)
        if decision == "skip":
            lines.append("nothing to do")
            return toy
        step = toy.load(ckpts[-1]) if decision == "continue" else 0
        start_run(exp, cfg, key)
        loop = toy.loop(cfg.max_steps, checkpoint_every=4)
        end = run_loop(loop, step, min(cfg.max_steps, stop_at or cfg.max_steps), lines.append, progress=False)
        finish_loop(loop, end)
        (exp / "model.txt").write_text(str(end.step))
        finish_run(exp, key, end.step >= cfg.max_steps, exp / "model.txt", step=end.step)
        return toy

    lines: list[str] = []
    a = train(tmp_path / "a", None, False, lines)
    train(tmp_path / "b", 6, False, lines)
    assert (tmp_path / "b" / "config.yaml").is_file() and (tmp_path / "b" / "run.json").is_file()
    with pytest.raises(PolyspeechError, match="--resume"):
        train(tmp_path / "b", None, False, lines)  # checkpoints and no --resume: nothing is overwritten
    b = train(tmp_path / "b", None, True, lines)
    assert torch.equal(a.w.weight, b.w.weight) and torch.equal(a.w.bias, b.w.bias)
    assert b.logged == [7, 8, 9, 10]
    train(tmp_path / "b", None, True, lines)
    assert lines[-1] == "nothing to do"  # the finished, identical run
    train(tmp_path / "c", None, True, lines)
    assert any("--resume: no checkpoint in" in line for line in lines)
    with pytest.raises(PolyspeechError, match="lr: 0.1 -> 0.2"):
        cfg.lr = 0.2
        key = run_key(cfg, cuts)
        train(tmp_path / "b", None, True, lines)
