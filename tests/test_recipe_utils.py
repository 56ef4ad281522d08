"""utils/parse_options.sh: Kaldi-style `--name value` parsing used by every recipe; recipe_lib.sh's stage times."""

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


STAGES = 'stage={first}\nstop_stage={last}\nexp_dir={exp}\n. {utils}/recipe_lib.sh\n' \
         'for n in 0 1 2; do if stage_on $n; then sleep {pause}; fi; done\nstage_times {now}\n'


def test_stage_times_keep_the_latest_run_of_each_stage(tmp_path):
    """stage_on notes each stage's start in EXP/stage_times.tsv; stage_times gives each stage's minutes
    (ended by the next stage of the same invocation), across invocations, the latest run of a stage winning."""
    def run_stages(first: int, last: int, pause: float, now: str = "") -> str:
        script = tmp_path / "stages.sh"
        script.write_text(STAGES.format(first=first, last=last, exp=tmp_path / "exp", utils=REPO / "utils", pause=pause, now=now))
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert run_stages(0, 1, 0) == "| stage | minutes |\n|---|---|\n| 0 | 0.0 |\n| all of these | 0.0 |\n"
    lines = (tmp_path / "exp" / "stage_times.tsv").read_text().splitlines()
    assert [ln.split("\t")[1] for ln in lines] == ["0", "1"]
    # A second invocation of stages 1-2 with 'now': stage 1 gets its new time, stage 2 runs until now
    table = run_stages(1, 2, 3, now="now")
    rows = {ln.split(" | ")[0].strip("| "): float(ln.split(" | ")[1].strip(" |")) for ln in table.splitlines()[2:]}
    assert set(rows) == {"0", "1", "2", "all of these"} and rows["1"] >= 0.05 and rows["2"] >= 0.05


LANES = 'nj={nj}\n. {utils}/recipe_lib.sh\nfor i in 1 2; do lane {tmp}/lane$i.log sh -c \'echo "$OMP_NUM_THREADS"\'; done\nwait_lanes\n'


def test_lanes_share_the_cores(tmp_path):
    """Background lanes each get cores / nj OpenMP threads (at least 1): torch's default, a thread per
    core in every lane, oversubscribes the cores many times over."""
    cores = int(subprocess.run(["getconf", "_NPROCESSORS_ONLN"], capture_output=True, text=True).stdout)
    for nj in (2, 64):
        script = tmp_path / "lanes.sh"
        script.write_text(LANES.format(nj=nj, utils=REPO / "utils", tmp=tmp_path))
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "99"})
        assert out.returncode == 0, out.stderr
        assert [(tmp_path / f"lane{i}.log").read_text().strip() for i in (1, 2)] == [str(max(1, cores // nj))] * 2
