"""Bad-input faults of issue 22 that have no other test file: the --help flags, the exp-dir lock."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.training import LOCK_NAME, exp_dir_lock

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("verb", [["train", "lm"], ["bench", "train"], ["transcribe"], []])
def test_help_shows_no_value_for_flags(run_cli, verb):
    """`--help -h` (and every other flag) takes no value: no `<bool>` in its row; options with a value keep their type."""
    for flag in ("--help", "-h"):
        r = run_cli(*verb, flag)
        assert r.exit_code == 0, r.output
        assert "Usage:" in r.output and "<bool>" not in r.output, r.output
        help_rows = [ln for ln in r.output.splitlines() if "--help" in ln and "-h" in ln]
        assert len(help_rows) == 1 and "Show this message and exit." in help_rows[0], r.output
    if verb == ["train", "lm"]:
        rows = {}
        for ln in r.output.splitlines():
            first = next((w for w in ln.split() if w.startswith("--")), None)
            if first and ln.lstrip("│ *").startswith("--"):
                rows[first] = ln
        assert "<path>" in rows["--config"] and "<int>" in rows["--max-steps"]  # values keep their type
        assert "--resume" in rows and "<" not in rows["--resume"]


# ---- one training per exp dir (exp_dir_lock) ------------------------------------------------------
def hold_lock(exp_dir: Path) -> subprocess.Popen:
    """Another process that takes the exp dir's lock and sleeps (returns once it holds it)."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from polyspeech_cli.training import exp_dir_lock
        with exp_dir_lock(Path({str(exp_dir)!r})):
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_held_by_another_process_names_its_pid_and_is_freed_by_kill_9(tmp_path):
    exp = tmp_path / "exp" / "lm"
    proc = hold_lock(exp)
    try:
        with pytest.raises(PolyspeechError) as e:
            with exp_dir_lock(exp):
                pytest.fail("took a lock another process holds")
        msg = str(e.value)
        assert f"another training (pid {proc.pid}) is running in {exp}" in msg and "use another --exp-dir" in msg and "\n" not in msg
    finally:
        proc.send_signal(signal.SIGKILL)  # kill -9: no clean-up runs in it
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (exp / LOCK_NAME).read_text().split()[0] == str(proc.pid)  # its lock file stays behind...
    with exp_dir_lock(exp):  # ...but the OS released the lock: it is taken over
        assert (exp / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    assert not (exp / LOCK_NAME).exists()


def test_lock_is_taken_again_after_release_in_the_same_process(tmp_path):
    exp = tmp_path / "exp"
    (exp / "ckpt").mkdir(parents=True)
    for _ in range(3):  # sequential trainings in one process
        with exp_dir_lock(exp):
            assert (exp / LOCK_NAME).is_file()
        assert not (exp / LOCK_NAME).exists() and (exp / "ckpt").is_dir()  # an existing exp dir is kept
    with exp_dir_lock(exp):
        with pytest.raises(PolyspeechError, match="this process already holds the lock"):
            with exp_dir_lock(exp):
                pass
        with open(exp / LOCK_NAME) as f:  # the refused inner call left the outer lock held
            with pytest.raises(BlockingIOError):
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with exp_dir_lock(exp):
        pass
    # an exp dir that the lock itself created and nothing was written into is not left behind
    with exp_dir_lock(tmp_path / "new" / "exp"):
        pass
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError):
        with exp_dir_lock(tmp_path / "failed"):
            raise RuntimeError("the training failed")
    assert not (tmp_path / "failed").exists()


@pytest.mark.parametrize("verb", ["codec", "vocoder"])
def test_second_training_on_the_same_exp_dir_is_refused(tmp_path, run_cli, verb):
    """`train codec` / `train vocoder` run inside the lock: a second one on a busy exp dir stops with
    one line naming the first one's pid, before reading any input or touching the exp dir."""
    exp = tmp_path / "exp"
    (exp / "ckpt").mkdir(parents=True)
    (exp / "ckpt" / "step-0000002.safetensors").write_bytes(b"the first run's checkpoint")
    proc = hold_lock(exp)
    try:
        args = ["train", verb, "-c", REPO / "conf" / f"{verb}_tiny.yaml", "--train-cuts", tmp_path / "train.jsonl.gz", "--exp-dir", exp]
        r = run_cli(*args, *(["--dev-cuts", tmp_path / "dev.jsonl.gz"] if verb == "codec" else []), "--resume")
        out = " ".join(r.output.split())
        assert r.exit_code == 1, r.output
        assert out.startswith("error:") and f"another training (pid {proc.pid}) is running in {exp}" in out, r.output
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert sorted(p.name for p in exp.rglob("*") if p.name != LOCK_NAME) == ["ckpt", "step-0000002.safetensors"]
    assert (exp / "ckpt" / "step-0000002.safetensors").read_bytes() == b"the first run's checkpoint"
