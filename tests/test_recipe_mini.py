"""egs/mini/run.sh --quick true runs every stage end to end (prepare → … → RESULTS.md), a re-run skips
finished work, and `polyspeech report` turns the run into a page that a browser plays."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from types import SimpleNamespace

import pytest
import yaml

from lhotse import CutSet

from conftest import REPO

pytestmark = pytest.mark.long_run  # minutes: collected first (tests/conftest.py)


@pytest.fixture(scope="module")
def quick_recipe(tmp_path_factory) -> SimpleNamespace:
    """One `run.sh --quick true` run shared by this module's tests (it takes minutes): the recipe dir,
    its command line and the first run's result."""
    root = tmp_path_factory.mktemp("quick")
    # A copy two levels below a root that has conf/ and utils/, like egs/mini in the repo.
    work = root / "egs"
    work.mkdir()
    (root / "conf").symlink_to(REPO / "conf")
    (root / "utils").symlink_to(REPO / "utils")
    shutil.copytree(REPO / "egs" / "mini", work / "mini", ignore=shutil.ignore_patterns("data", "exp", "corpus", "RESULTS*"))
    recipe = work / "mini"
    # --budget-runs: a run "at budget 2" (this one again) puts its dev curves and the extrapolation on the page
    cmd = ["bash", str(recipe / "run.sh"), "--quick", "true", "--train-utts", "4", "--budget-runs", "2=exp"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return SimpleNamespace(recipe=recipe, cmd=cmd, first=first)


def test_quick_recipe_end_to_end_then_skips(quick_recipe):
    recipe, cmd, first = quick_recipe.recipe, quick_recipe.cmd, quick_recipe.first
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
    assert "## Budgets 1 and 2: where the curves go" in table and "| ASR CER (all) ≤ 15% | single-task |" in table
    for png in ("RESULTS_curves.png", "RESULTS_confusion.png", "RESULTS_budgets.png"):
        assert (recipe / png).stat().st_size > 0 and f"({png})" in table
    # Matched baselines: each single-task LM trains the steps the multitask LM spent on its task
    # (its seeded draws replayed), with early stopping; the rule is stated under the budget table.
    configs = {lm: yaml.safe_load((recipe / "exp" / f"lm_{lm}" / "config.yaml").read_text()) for lm in ("multi", "asr", "tts", "lid", "gid")}
    assert configs["multi"]["max_steps"] == 20
    with open(recipe / "exp" / "lm_multi" / "train_log.csv", newline="") as f:
        seen = {r["task"]: int(r["task_steps"]) for r in csv.DictReader(f) if r["split"] == "train"}
    for t in ("asr", "tts", "lid", "gid"):
        assert configs[t]["max_steps"] == max(1, seen.get(t, 0)), (t, configs[t]["max_steps"], seen)
    assert configs["multi"]["patience"] == 0 and all(configs[t]["patience"] > 0 for t in ("asr", "tts", "lid", "gid"))
    assert sum(ln.startswith("| lm_") for ln in table.splitlines()) == 5  # the training-budget table
    assert "share of LM time" in table and "Rule: the multitask LM trains 20 steps" in table
    assert "## Reference: pooled-fbank logistic regression" in table  # the LID/GID linear floor
    # The minutes of each stage behind the page (utils/recipe_lib.sh stage_times), and all of them at the end of the log
    assert "Stage times of the runs behind this page" in table and "| 4 |" in table.split("Stage times of the runs")[1]
    assert "Minutes per stage:" in first.stdout and "| all of these |" in first.stdout.split("Minutes per stage:")[1]

    # A re-run of the stages that make artefacts (0-5) skips them all: every model and decode stays as it
    # was (stage 6 only reads them and always rewrites its tables; the first run covered it).
    made = {p: p.stat().st_mtime_ns for p in [*(recipe / "exp").glob("*/model.safetensors"),
                                              *(recipe / "exp").glob("lm_*/decode_*/results.jsonl")]}
    assert len(made) >= 6 + 4 + 4 + 1 + 3, sorted(made)  # codec, vocoder, 5 LMs; decodes of both systems, resynth, judge
    second = subprocess.run([*cmd, "--stop-stage", "5"], capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "nothing to do" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in made} == made  # nothing was trained or decoded again


def _browser():
    """A headless Chromium driven by the system chromedriver, or a skip that says what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip(f"headless Chromium not available (browser: {binary}, chromedriver: {driver}); on Debian: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio"):
        options.add_argument(arg)
    try:
        # The system chromedriver, never Selenium Manager (it would try to download one).
        return webdriver.Chrome(service=Service(executable_path=driver), options=options)
    except Exception as e:  # a browser that cannot start here (no shared libraries, no display support)
        pytest.skip(f"headless Chromium did not start: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


# Every player's state once each has loaded its metadata or failed (or after the wait).
MEDIA_STATE = """
return Array.from(document.querySelectorAll('audio')).map(a => ({ready: a.readyState, duration: a.duration,
                                                                 error: a.error && a.error.code}));
"""


def test_report_page_plays_in_headless_chromium(quick_recipe):
    assert quick_recipe.first.returncode == 0, "the quick recipe failed (see the end-to-end test)"
    page = quick_recipe.recipe / "RESULTS.html"  # stage 6 ends with `polyspeech report`
    text = page.read_text(encoding="utf-8")
    assert 'src="RESULTS_' not in text and "file://" not in text  # every figure and player is embedded in the page

    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
        browser.get(page.as_uri())
        WebDriverWait(browser, 60).until(lambda b: all(a["ready"] >= 1 or a["error"] for a in b.execute_script(MEDIA_STATE)))
        tables = browser.execute_script("return Array.from(document.querySelectorAll('table')).map(t => t.innerText)")
        images = browser.execute_script("return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        players = browser.execute_script(MEDIA_STATE)
        samples = browser.execute_script("return Array.from(document.querySelectorAll('section.sample')).map(s => "
                                         "Array.from(s.querySelectorAll('tbody tr')).map(r => Array.from(r.cells).map(c => c.innerText)))")
    finally:
        browser.quit()
    assert any("ASR CER %" in t and "multitask" in t for t in tables), tables[:2]  # RESULTS.md's main table
    assert {alt for alt, _, _ in images} >= {"training curves", "LID and GID confusion matrices"}, images
    assert all(complete and width > 0 for _, complete, width in images), images
    assert len(samples) == 4  # the default --utts
    # Per sentence: prompt, real recording, then multitask, single-task and the back end fed real data (mel, tokens),
    # each with the judge's CER, SECS and MCD of that utterance.
    for rows in samples:
        assert [r[0].split(" (")[0] for r in rows] == ["prompt", "reference", "multitask", "single-task", "back end fed real data: mel", "back end fed real data: tokens"], rows
        assert all(cell != "–" for r in rows[2:] for cell in r[4:]), rows
    assert len(players) == 6 * len(samples), players
    assert all(p["ready"] >= 1 and p["duration"] > 0 for p in players), players
