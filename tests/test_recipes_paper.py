"""The paper-scale recipes (egs/aishell, egs/librispeech, egs/commonvoice): their data and feature
stages on miniature corpora in the real directory layouts, with a tiny local HuBERT on the CPU.

The GPU stages (LM training under torchrun, the speech decoder, decoding) are not run here; this
proves the wiring: Lhotse's recipe -> our manifests -> combined sets -> HuBERT features (-> SSET)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from lhotse import CutSet

from conftest import REPO
from fakes import fake_aishell, fake_commonvoice, fake_librispeech, tiny_hubert

# A codec small enough for a few CPU steps on 1-s utterances (49 HuBERT frames each).
TINY_CODEC = """channels: 16
res_blocks: 1
kernel_size: 3
downsample: 1
latent_dim: 8
n_codebooks: 2
codebook_size: 16
max_steps: 3
batch_size: 2
segment_frames: 32
warmup_steps: 1
log_every: 1
eval_every: 3
checkpoint_every: 3
max_dev_cuts: 2
precision: fp32
device: cpu
"""


@pytest.fixture(scope="module")
def hubert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_hubert(tmp_path_factory.mktemp("hubert") / "tiny_hubert")


def run_recipe(name: str, tmp: Path, hubert: Path, *options: str, stop_stage: int = 1) -> subprocess.CompletedProcess:
    """egs/<name>/run.sh from the repository, every output under `tmp` (data/, exp/, conf/)."""
    conf = tmp / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "codec_hubert.yaml").write_text(TINY_CODEC)
    cmd = ["bash", str(REPO / "egs" / name / "run.sh"), "--data-dir", str(tmp / "data"), "--exp-dir", str(tmp / "exp"),
           "--conf", str(conf), "--hubert-model", str(hubert), "--hubert-layer", "2", "--hubert-batch", "2", "--device", "cpu",
           "--stage", "0", "--stop-stage", str(stop_stage), *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def check_features(data: Path, corpus: str, counts: dict[str, int], kind: str = "hubert") -> None:
    for split, n in counts.items():
        cuts = CutSet.from_file(data / kind / f"{corpus}_cuts_{split}.jsonl.gz")
        assert len(cuts) == n, (split, len(cuts))
        for cut in cuts:
            x = cut.load_features()
            assert x.shape == (cut.num_frames, 32) and abs(x.shape[0] * 0.02 - cut.duration) <= 0.04
            if kind == "sset":
                assert cut.load_custom("sset").shape == (cut.num_frames, 2)
    info = json.loads((data / kind / f"{kind}.json").read_text())
    assert info["type"] == kind


def test_aishell_data_feature_and_codec_stages(tmp_path: Path, hubert: Path) -> None:
    corpus = fake_aishell(tmp_path / "aishell")
    run_recipe("aishell", tmp_path, hubert, "--corpus-dir", str(corpus), stop_stage=2)
    data = tmp_path / "data"
    counts = {"train": 2, "dev": 2, "test": 2}
    for split, n in counts.items():
        cuts = CutSet.from_file(data / f"aishell_cuts_{split}.jsonl.gz")
        assert len(cuts) == n and {c.supervisions[0].language for c in cuts} == {"zh"}
    check_features(data, "aishell", counts)
    assert (tmp_path / "exp" / "codec" / "model.safetensors").is_file()
    check_features(data, "aishell", counts, kind="sset")


def test_librispeech_data_and_feature_stages_combine_parts(tmp_path: Path, hubert: Path) -> None:
    parts = (("train-clean-100", "19", "F"), ("train-clean-100", "26", "M"), ("train-clean-360", "14", "F"),
             ("dev-clean", "84", "F"), ("dev-other", "116", "M"), ("test-clean", "61", "M"))
    corpus = fake_librispeech(tmp_path / "ls", parts)
    options = ("--corpus-dir", str(corpus), "--train-parts", "train-clean-100 train-clean-360", "--dev-parts", "dev-clean dev-other",
               "--test-sets", "test-clean")
    run_recipe("librispeech", tmp_path, hubert, *options)
    data = tmp_path / "data"
    train = CutSet.from_file(data / "librispeech_cuts_train.jsonl.gz")
    assert len(train) == 6 and {c.supervisions[0].gender for c in train} == {"F", "M"}
    check_features(data, "librispeech", {"train": 6, "dev": 4, "test-clean": 2})
    # a re-run of the data stage does nothing: prepare and both combined sets are up to date
    again = run_recipe("librispeech", tmp_path, hubert, *options, stop_stage=0)
    assert " ".join(again.stdout.split()).count("nothing to do") == 3, again.stdout[-3000:]


def test_commonvoice_data_and_feature_stages_over_two_locales(tmp_path: Path, hubert: Path) -> None:
    corpus = fake_commonvoice(tmp_path / "cv", locales=("zh-CN", "en"))
    run_recipe("commonvoice", tmp_path, hubert, "--corpus-dir", str(corpus), "--locales", "zh-CN,en")
    data = tmp_path / "data"
    for split, gender in (("train", {"F"}), ("dev", {"M"}), ("test", {None})):
        cuts = CutSet.from_file(data / f"commonvoice_cuts_{split}.jsonl.gz")
        assert len(cuts) == 4
        assert {c.supervisions[0].language for c in cuts} == {"zh", "en"}
        assert {c.supervisions[0].gender for c in cuts} == gender
    check_features(data, "commonvoice", {"train": 4, "dev": 4, "test": 4})
