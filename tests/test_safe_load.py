"""Model files cannot run code: every loader refuses a file carrying a pickled payload.

The payload is an object whose unpickling would create a marker file (`open(marker, "w")`); it is
placed where each loader looks (final models `model.safetensors`, training checkpoints
`ckpt/step-N.safetensors`, k-means centroids), and every command must exit 1 with one clear line
naming the file while the marker never appears. Training checkpoints of older versions
(`ckpt/step-N.pt`, pickles) are refused by name, never opened. The trained exp dirs come from test_decode's `system`
fixture (LM, codec, vocoder), plus a tiny codec and vocoder trained here for the --resume cases.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import run_flat
from test_decode import system  # noqa: F401  (the session fixture: a complete tiny system)

torch.set_num_threads(1)


class Payload:
    """Unpickling this calls open(marker, "w"): arbitrary code, as a real attack would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def poison(path: Path, marker: Path) -> Path:
    """Overwrite `path` with a torch checkpoint that runs code when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    torch.save({"kind": "sset_codec", "model": {"w": torch.zeros(1)}, "step": 1, "payload": Payload(marker)}, path)
    return path


def refused(result, path: Path, marker: Path) -> None:
    assert result.exit_code == 1, result.output
    assert "not a safe" in result.output and path.name in result.output, result.output
    assert not marker.exists(), "the pickled payload ran"


@pytest.fixture(scope="module")
def env(system, tmp_path_factory) -> dict:  # noqa: F811
    """A copy of the system's exp dirs (poisoned per test) and tiny codec/vocoder training runs."""
    root = tmp_path_factory.mktemp("safe")
    shutil.copytree(system["root"] / "exp", root / "exp")
    cuts = system["cuts"]
    (root / "codec.yaml").write_text("channels: 16\nres_blocks: 1\nlatent_dim: 8\nn_codebooks: 2\ncodebook_size: 16\nbatch_size: 2\n"
                                     "segment_frames: 32\nwarmup_steps: 1\nlog_every: 1\neval_every: 2\ncheckpoint_every: 2\n"
                                     "device: cpu\nthreads: 1\n")
    r = run_flat("train", "codec", "-c", root / "codec.yaml", "--train-cuts", cuts, "--dev-cuts", cuts, "--exp-dir", root / "codec_run",
                 "--max-steps", 2)
    assert r.exit_code == 0, r.output
    (root / "voc.yaml").write_text("decoder: {channels: 8, blocks: 1, dilations: [1], speaker: {channels: 8, conv_layers: 1, gru_dim: 8, "
                                   "embed_dim: 8}}\nbatch_size: 2\nsegment_frames: 20\nprompt_frames: 30\nvalid_every: 0\n"
                                   "checkpoint_every: 2\ndevice: cpu\n")
    r = run_flat("train", "vocoder", "-c", root / "voc.yaml", "--train-cuts", cuts, "--exp-dir", root / "vocoder_run", "--max-steps", 2,
                 "--no-progress", "--threads", "1")
    assert r.exit_code == 0, r.output
    return {"root": root, "cuts": cuts, "audio": system["root"] / "audio" / "u0.wav", "lm": root / "exp" / "lm",
            "codec": root / "exp" / "codec", "vocoder": root / "exp" / "vocoder"}


def fresh_copy(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def test_the_payload_is_live(tmp_path):
    """The check is meaningful: an unsafe load of the poisoned file does create the marker."""
    marker = tmp_path / "marker"
    path = poison(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)  # what the loaders used to do
    assert marker.exists()


def test_lm_loaders_refuse(env, tmp_path):
    marker = tmp_path / "marker"
    lm = fresh_copy(env["lm"], tmp_path / "exp" / "lm")
    for d in ("codec", "vocoder"):
        shutil.copytree(env[d], tmp_path / "exp" / d)
    model = poison(lm / "model.safetensors", marker)
    refused(run_flat("decode", "--task", "lid", "--exp-dir", lm, "--cuts", env["cuts"]), model, marker)
    refused(run_flat("transcribe", env["audio"], "--model", lm), model, marker)
    refused(run_flat("synthesize", "--text", "good day", "--lang", "en", "--prompt", env["audio"], "--out", tmp_path / "o.wav", "--model", lm),
            model, marker)
    refused(run_flat("bench", "decode", "--exp-dir", lm, "--tokens", 2, "--max-cuts", 1), model, marker)
    ckpt = sorted((lm / "ckpt").glob("step-*.safetensors"))[-1]
    poison(ckpt, marker)
    refused(run_flat("decode", "--task", "lid", "--exp-dir", lm, "--cuts", env["cuts"], "--checkpoint", ckpt), ckpt, marker)
    # train lm --resume reads the newest checkpoint
    r = run_flat("train", "lm", "-c", lm / "config.yaml", "--train-cuts", env["cuts"], "--exp-dir", lm, "--resume", "--no-progress")
    refused(r, ckpt, marker)
    assert not (tmp_path / "o.wav").exists()


def test_codec_and_vocoder_files_refused_at_synthesis(env, tmp_path):
    marker = tmp_path / "marker"
    exp = tmp_path / "exp"
    for d in ("lm", "codec", "vocoder"):
        shutil.copytree(env[d], exp / d)
    args = ("synthesize", "--text", "good day", "--lang", "en", "--prompt", env["audio"], "--out", tmp_path / "o.wav", "--model", exp / "lm")
    codec = poison(exp / "codec" / "model.safetensors", marker)
    refused(run_flat(*args), codec, marker)
    shutil.copy(env["codec"] / "model.safetensors", codec)
    voc = poison(exp / "vocoder" / "model.safetensors", marker)
    refused(run_flat(*args), voc, marker)
    refused(run_flat("vocoder-eval", "--exp-dir", exp / "vocoder", "--cuts", env["cuts"]), voc, marker)


def test_token_extraction_and_codec_eval_refuse(env, tmp_path):
    marker = tmp_path / "marker"
    codec = poison(tmp_path / "codec" / "model.safetensors", marker)
    refused(run_flat("extract-tokens", "--type", "sset", env["cuts"], "--out-dir", tmp_path / "sset", "--checkpoint", codec), codec, marker)
    refused(run_flat("codec-eval", env["cuts"], "--checkpoint", tmp_path / "codec"), codec, marker)
    km = poison(tmp_path / "km" / "kmeans_centroids.safetensors", marker)
    refused(run_flat("extract-tokens", "--type", "kmeans", env["cuts"], "--out-dir", tmp_path / "km", "--k", 4), km, marker)
    refused(run_flat("codec-eval", env["cuts"], "--checkpoint", env["codec"], "--kmeans", km, "--out", tmp_path / "e.json"), km, marker)
    assert not (tmp_path / "sset" / "cuts.jsonl.gz").exists() and not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("kind", ["codec", "vocoder"])
def test_train_resume_refuses(env, tmp_path, kind):
    marker = tmp_path / "marker"
    exp = fresh_copy(env["root"] / f"{kind}_run", tmp_path / kind)
    ckpt = poison(sorted((exp / "ckpt").glob("step-*.safetensors"))[-1], marker)
    conf = env["root"] / ("codec.yaml" if kind == "codec" else "voc.yaml")
    extra = ("--dev-cuts", env["cuts"]) if kind == "codec" else ("--no-progress", "--threads", 1)
    r = run_flat("train", kind, "-c", conf, "--train-cuts", env["cuts"], *extra, "--exp-dir", exp, "--max-steps", 4, "--resume")
    refused(r, ckpt, marker)


def legacy_refused(result, path: Path, marker: Path) -> None:
    """One line naming the old .pt file and saying to retrain into a new --exp-dir; nothing unpickled."""
    out = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert out.startswith("error:") and out.count("error:") == 1 and path.name in out and "new --exp-dir" in out, result.output
    assert "Traceback" not in result.output and not marker.exists(), result.output


def test_legacy_pt_checkpoints_are_refused_by_name(env, tmp_path):
    """An exp dir holding `ckpt/step-N.pt` of an older version: training (--resume or not) and
    decoding stop with one line naming the file; the pickle is never loaded."""
    marker = tmp_path / "marker"
    lm = fresh_copy(env["lm"], tmp_path / "exp" / "lm")
    old = poison(lm / "ckpt" / "step-0000009.pt", marker)
    legacy_refused(run_flat("train", "lm", "-c", lm / "config.yaml", "--train-cuts", env["cuts"], "--exp-dir", lm, "--resume",
                            "--no-progress"), old, marker)
    legacy_refused(run_flat("train", "lm", "-c", lm / "config.yaml", "--train-cuts", env["cuts"], "--exp-dir", lm, "--no-progress"),
                   old, marker)
    legacy_refused(run_flat("decode", "--task", "lid", "--exp-dir", lm, "--cuts", env["cuts"]), old, marker)
    old.unlink()
    avg = poison(tmp_path / "avg-2.pt", marker)
    legacy_refused(run_flat("decode", "--task", "lid", "--exp-dir", lm, "--cuts", env["cuts"], "--checkpoint", avg), avg, marker)
    for kind in ("codec", "vocoder"):
        exp = fresh_copy(env["root"] / f"{kind}_run", tmp_path / kind)
        old = poison(exp / "ckpt" / "step-0000001.pt", marker)
        conf = env["root"] / ("codec.yaml" if kind == "codec" else "voc.yaml")
        extra = ("--dev-cuts", env["cuts"]) if kind == "codec" else ("--no-progress", "--threads", 1)
        legacy_refused(run_flat("train", kind, "-c", conf, "--train-cuts", env["cuts"], *extra, "--exp-dir", exp, "--max-steps", 4,
                                "--resume"), old, marker)


def test_checkpoint_file_round_trip(tmp_path):
    """A training state (model, fused AdamW, scheduler, scaler, int-keyed sampler positions, RNG
    states, tuples, inf, None) comes back equal from `ckpt/step-N.safetensors`: tensors in the file,
    the rest as JSON in its header, no pickle anywhere."""
    import json
    import random

    from safetensors import safe_open

    from polyspeech_cli.fileio import STATE_HEADER, load_state_file
    from polyspeech_cli.lm.checkpoint import rng_state
    from polyspeech_cli.fileio import list_checkpoints
    from polyspeech_cli.training import save_checkpoint

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.98), fused=True)
    m(torch.randn(2, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = {"model": m.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "scaler": torch.amp.GradScaler("cpu", enabled=True).state_dict(), "streams": {0: {"asr": {"epoch": 1, "pos": 3}}},
             "task_rng": rng_state(random.Random(3)), "torch_rng": torch.get_rng_state(), "cuda_rng": None,
             "best": {"error": float("inf"), "model": None}, "empty": torch.zeros(0, 3), "half": torch.tensor(2.5, dtype=torch.bfloat16),
             "a.b": torch.ones(1), "a": {"b": torch.zeros(1)}, "$odd": (1, 2.0, "x"), "step": 7}
    path = save_checkpoint(tmp_path, 7, state, keep_last=1)
    assert path.name == "step-0000007.safetensors" and list_checkpoints(tmp_path) == [path]
    back = load_state_file(path, None, "checkpoint", "", "")

    def same(a, b, where="") -> None:
        assert type(a) is type(b) or (isinstance(a, dict) and type(b) is dict), where
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
        elif isinstance(a, dict):
            assert list(a) == list(b), where
            for k in a:
                same(a[k], b[k], f"{where}.{k}")
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b)):
                same(x, y, f"{where}.{i}")
        else:
            assert a == b, where

    same(state, back)
    torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.98), fused=True).load_state_dict(back["optimizer"])
    with safe_open(str(path), framework="pt") as f:
        assert "model.0.weight" in f.keys() and "optimizer.state.0.exp_avg" in f.keys()
        json.loads(f.metadata()[STATE_HEADER])
    assert path.read_bytes()[8:9] == b"{"  # a safetensors JSON header, not a pickle
