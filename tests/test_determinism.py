"""Same seed, same machine => bit-identical LM weights, whatever Python's hash seed.

Two `polyspeech train lm` processes (the multitask LM, tasks asr,tts,lid,gid, a tiny config, 20
steps) on the small generated cuts of test_lm.py, one with PYTHONHASHSEED=1 and one with 2: any
iteration over a set or a hash-ordered structure that reaches the vocabulary, the task mix or the
batch order would show up as different weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from polyspeech_cli.lm.checkpoint import read_checkpoint
from polyspeech_cli.fileio import list_checkpoints

TINY = {
    "model": {"d_model": 64, "n_layers": 2, "n_heads": 2, "n_kv_heads": 2, "d_ff": 128},
    "data": {"speech_tokens": "kmeans"},
    "tasks": ["asr", "tts", "lid", "gid"],
    "max_duration": 30.0, "warmup_steps": 5, "lr": 3.0e-3, "max_steps": 20, "threads": 1, "device": "cpu",
    "valid_every": 0, "eval_every": 0, "checkpoint_every": 1000, "log_every": 5, "seed": 0,
}


@pytest.fixture(scope="module")
def cuts(tmp_path_factory) -> Path:
    from test_lm import _make_cuts  # the eight eSpeak utterances of the LM tests

    root = tmp_path_factory.mktemp("detdata")
    _make_cuts(root)
    return root / "cuts.jsonl.gz"


def _train(cuts: Path, exp: Path, conf: Path, hash_seed: str) -> dict[str, torch.Tensor]:
    cmd = [sys.executable, "-c", "from polyspeech_cli.cli import main; main()", "train", "lm", "--config", str(conf),
           "--train-cuts", str(cuts), "--exp-dir", str(exp), "--no-progress"]
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return read_checkpoint(list_checkpoints(exp)[-1])["model"]


def test_two_processes_train_bit_identical_models(cuts, tmp_path):
    conf = tmp_path / "lm.yaml"
    conf.write_text(yaml.safe_dump(TINY))
    a = _train(cuts, tmp_path / "a", conf, "1")
    b = _train(cuts, tmp_path / "b", conf, "2")
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"
    assert (tmp_path / "a" / "vocab.json").read_text() == (tmp_path / "b" / "vocab.json").read_text()
