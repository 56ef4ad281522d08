"""egs/real/run.sh --quick true runs every stage end to end on the real sets of ../shared/data
(tiny subsets), scores every source on its own and writes one RESULTS.md section per source."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from lhotse import CutSet

from conftest import REPO

pytestmark = pytest.mark.long_run  # minutes: collected first (tests/conftest.py)

SOURCES = ("speechocean762_train", "fsdd", "magicdata_zh", "cathy", "ljspeech", "an4", "librispeech_gender", "synth")


def copy_recipe(tmp_path):
    """A copy two levels below a root that has conf/ and utils/, like egs/real in the repo."""
    work = tmp_path / "egs"
    work.mkdir()
    (tmp_path / "conf").symlink_to(REPO / "conf")
    (tmp_path / "utils").symlink_to(REPO / "utils")
    shutil.copytree(REPO / "egs" / "real", work / "real", ignore=shutil.ignore_patterns("data", "exp", "corpus", "RESULTS*"))
    return work / "real"


def test_recipe_without_shared_data_says_so(tmp_path):
    recipe = copy_recipe(tmp_path)
    out = subprocess.run(["bash", str(recipe / "run.sh"), "--shared", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "no real-speech data at" in out.stdout + out.stderr and "--shared" in out.stdout + out.stderr


def test_quick_recipe_end_to_end(tmp_path, shared_dir):
    recipe = copy_recipe(tmp_path)
    cmd = ["bash", str(recipe / "run.sh"), "--quick", "true", "--shared", str(shared_dir), "--mini-exp", str(tmp_path / "no_mini")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]
    assert "Stage 7: skipped: no egs/mini model" in run.stdout

    data, exp = recipe / "data", recipe / "exp"
    # 8 kHz FLAC (fsdd), 16 kHz FLAC and 22.05 kHz WAV (ljspeech) all end up as 16 kHz cuts with fbank.
    for name in ("fsdd", "ljspeech", "cathy"):
        cut = next(iter(CutSet.from_file(data / "fbank" / f"{name}_cuts_test.jsonl.gz")))
        assert cut.sampling_rate == 16000 and cut.has_features, name
    # Speaker-disjoint held-out splits where the set has enough speakers.
    for name in ("speechocean762_train", "librispeech_gender", "an4"):
        spk = {s: {c.supervisions[0].speaker for c in CutSet.from_file(data / f"{name}_cuts_{s}.jsonl.gz")} for s in ("train", "test")}
        assert spk["test"] and not spk["test"] & spk["train"], name
    # Only the TTS voices carry SSET tokens (TTS examples); librispeech_gender (no text) is never ASR/TTS.
    train = CutSet.from_file(data / "lm" / "cuts_train.jsonl.gz")
    with_tokens = {c.id for c in train if c.has_custom("sset")}
    voices = {c.id for n in ("cathy", "ljspeech", "magicdata_zh") for c in CutSet.from_file(data / f"{n}_cuts_train.jsonl.gz")}
    assert with_tokens == voices
    synth = [c for c in train if c.id in {x.id for x in CutSet.from_file(data / "synth_cuts_train.jsonl.gz")}]
    assert synth and all(not c.supervisions[0].text and c.supervisions[0].gender is None for c in synth)  # LID only

    # Per source: each task it has labels for, both systems, scored on its own.
    multi = json.loads((exp / "score" / "librispeech_gender" / "multi" / "scores.json").read_text())
    assert {s["task"] for s in multi.values()} == {"lid", "gid"}
    cathy = json.loads((exp / "score" / "cathy" / "multi" / "scores.json").read_text())
    assert {s["task"] for s in cathy.values()} == {"asr", "lid", "gid", "tts"}
    tts = next(s for s in cathy.values() if s["task"] == "tts")
    assert tts["secs_between_speakers"] == tts["secs_between_speakers"]  # the line of different real speakers, not NaN
    synth_scores = json.loads((exp / "score" / "synth" / "multi" / "scores.json").read_text())
    assert {s["task"] for s in synth_scores.values()} == {"lid"}

    table = (recipe / "RESULTS.md").read_text()
    headings = {ln[3:].strip() for ln in table.splitlines() if ln.startswith("## ")}
    assert set(SOURCES) <= headings, headings
    assert "## Sets and splits" in table and "## Every source side by side" in table
    for src in SOURCES:
        assert f"### {src}: single-task vs multitask" in table, src
        assert any(ln.startswith(f"| {src} |") for ln in table.split("## Every source side by side")[1].split("\n## ")[0].splitlines()), src
    cathy_section = table.split("## cathy\n")[1].split("\n## ")[0]
    for row in ("ASR CER %", "TTS SECS", "TTS CER %", "LID accuracy %", "GID accuracy %"):
        line = next(ln for ln in cathy_section.splitlines() if ln.startswith(f"| {row} |"))
        assert "–" not in line and "nan" not in line, line
    assert "its CER on the real test audio is" in cathy_section
    assert (recipe / "RESULTS_curves.png").stat().st_size > 0 and "(RESULTS_curves.png)" in table
    assert sum(ln.startswith("| lm_") for ln in table.splitlines()) == 5  # the training-budget table, once
