"""egs/mini/run.sh --quick true runs every stage end to end (prepare → … → RESULTS.md), and a re-run skips finished work."""

from __future__ import annotations

import json
import shutil
import subprocess

import yaml

from lhotse import CutSet

from conftest import REPO


def test_quick_recipe_end_to_end_then_skips(tmp_path):
    # A copy two levels below a root that has conf/ and utils/, like egs/mini in the repo.
    work = tmp_path / "egs"
    work.mkdir()
    (tmp_path / "conf").symlink_to(REPO / "conf")
    (tmp_path / "utils").symlink_to(REPO / "utils")
    shutil.copytree(REPO / "egs" / "mini", work / "mini", ignore=shutil.ignore_patterns("data", "exp", "corpus"))
    recipe = work / "mini"
    cmd = ["bash", str(recipe / "run.sh"), "--quick", "true", "--train-utts", "4"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    cuts = CutSet.from_file(recipe / "data" / "synth_cuts_train.jsonl.gz")
    assert {c.supervisions[0].language for c in cuts} >= {"en", "zh", "de", "fr", "es"}
    assert {c.supervisions[0].gender for c in cuts} == {"M", "F"}
    sset = CutSet.from_file(recipe / "data" / "sset" / "synth_cuts_test.jsonl.gz")
    assert sset[0].has_features and sset[0].load_custom("sset").ndim == 2
    evaluation = json.loads((recipe / "exp" / "codec" / "codec_eval.json").read_text())
    assert evaluation  # the SSET vs k-means comparison was written
    assert (recipe / "exp" / "vocoder" / "model.safetensors").is_file() and (recipe / "exp" / "codec" / "model.safetensors").is_file()
    for lm in ("multi", "asr", "tts", "lid", "gid"):
        assert (recipe / "exp" / f"lm_{lm}" / "vocab.json").is_file(), lm
    assert len(list((recipe / "exp" / "lm_multi" / "decode_tts_test" / "wav").glob("*.wav"))) == 20
    table = (recipe / "RESULTS.md").read_text()
    for row in ("ASR CER %", "TTS SECS", "TTS CER %", "LID accuracy %", "GID accuracy %"):
        line = next(ln for ln in table.splitlines() if ln.startswith(f"| {row} |"))
        assert "–" not in line, line  # every cell holds a measured number
    assert "## Environment" in table and "## Quality bars" in table
    for png in ("RESULTS_curves.png", "RESULTS_confusion.png"):
        assert (recipe / png).stat().st_size > 0 and f"({png})" in table
    # Fair baselines: each single-task LM may train as long as the multitask LM, with early stopping.
    configs = {lm: yaml.safe_load((recipe / "exp" / f"lm_{lm}" / "config.yaml").read_text()) for lm in ("multi", "asr", "tts", "lid", "gid")}
    assert {c["max_steps"] for c in configs.values()} == {20}, configs
    assert configs["multi"]["patience"] == 0 and all(configs[t]["patience"] > 0 for t in ("asr", "tts", "lid", "gid"))
    assert sum(ln.startswith("| lm_") for ln in table.splitlines()) == 5  # the training-budget table

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "nothing to do" in second.stdout
