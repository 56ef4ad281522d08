"""egs/mini/run.sh runs its stages from the command line, and skips finished work on a re-run."""

from __future__ import annotations

import shutil
import subprocess

from lhotse import CutSet

from conftest import REPO


def test_stage0_generates_and_prepares_then_skips(tmp_path):
    work = tmp_path / "egs"
    work.mkdir()
    (tmp_path / "conf").symlink_to(REPO / "conf")
    (tmp_path / "utils").symlink_to(REPO / "utils")
    shutil.copytree(REPO / "egs" / "mini", work / "mini", ignore=shutil.ignore_patterns("data", "exp", "corpus"))
    cmd = ["bash", str(work / "mini" / "run.sh"), "--stage", "0", "--stop-stage", "0", "--quick", "true", "--train-utts", "2"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    cuts = CutSet.from_file(work / "mini" / "data" / "synth_cuts_train.jsonl.gz")
    assert {c.supervisions[0].language for c in cuts} >= {"en", "zh", "de", "fr", "es"}
    assert {c.supervisions[0].gender for c in cuts} == {"M", "F"}
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and "nothing to do" in second.stdout
