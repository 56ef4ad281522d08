"""utils/parse_options.sh: Kaldi-style `--name value` parsing used by every recipe."""

from __future__ import annotations

import subprocess

from conftest import REPO

SCRIPT = 'stage=0\nstop_stage=100\nlang_list=en\n. {utils}/parse_options.sh\necho "$stage $stop_stage $lang_list $*"\n'


def run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "run.sh"
    script.write_text(SCRIPT.format(utils=REPO / "utils"))
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True)


def test_sets_declared_variables(tmp_path):
    out = run(tmp_path, "--stage", "3", "--stop-stage=5", "--lang-list", "en,zh", "positional")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3 5 en,zh positional"


def test_unknown_option_is_an_error(tmp_path):
    out = run(tmp_path, "--stgae", "3")
    assert out.returncode != 0 and "unknown option --stgae" in out.stderr


def test_missing_value_is_an_error(tmp_path):
    out = run(tmp_path, "--stage")
    assert out.returncode != 0 and "needs a value" in out.stderr
