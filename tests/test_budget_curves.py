"""`polyspeech budget-curves`: runs at two budgets, their dev curves on one figure and the budget each target needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.score.budget_curves import dev_curve, needed_budget, parse_targets
from tests.test_peer_dev_tables import _log


def _run(root: Path, cer: dict[str, float], lid: float, minutes: float) -> Path:
    """A recipe exp dir: lm_multi and lm_asr logs, and both systems' test scores (the same for both)."""
    for lm in ("lm_multi", "lm_asr"):
        _log(root / lm / "train_log.csv", [
            {"step": 100, "split": "train", "task": "asr", "loss": 2.0, "elapsed_s": 30 * minutes},
            {"step": 100, "split": "dev", "task": "asr", "loss": 1.5},
            {"step": 100, "split": "dev", "task": "asr", "metric": "asr_cer", "value": 0.6, "elapsed_s": 31 * minutes},
            {"step": 200, "split": "train", "task": "asr", "loss": 1.0, "elapsed_s": 60 * minutes},
            {"step": 200, "split": "dev", "task": "asr", "loss": 1.2},
            {"step": 200, "split": "dev", "task": "asr", "metric": "asr_cer", "value": 0.4, "elapsed_s": 61 * minutes}])
    scores = {"decode_asr_test": {"task": "asr", "cer": cer}, "decode_lid_test": {"task": "lid", "accuracy": lid}}
    for path in ("lm_multi/scores.json", "single/scores.json"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(json.dumps(scores))
    return root


def test_needed_budget_by_hand():
    # 40% at budget 1, 20% at budget 4: a = ln 2 / ln 4 = 0.5; 10% needs 4 * (20/10)^(1/0.5) = 16
    a, budget = needed_budget(1, 40.0, 4, 20.0, 10.0)
    assert a == pytest.approx(0.5) and budget == pytest.approx(16.0)
    assert needed_budget(1, 40.0, 4, 20.0, 25.0)[1] == 4  # met at the larger budget
    assert needed_budget(1, 20.0, 4, 30.0, 10.0) == (0.0, None)  # got worse: no line to extrapolate


def test_dev_curve_minutes_and_losses(tmp_path):
    run = _run(tmp_path / "b1", {"all": 0.4}, 0.9, minutes=2)
    assert dev_curve(run / "lm_multi", "asr", "asr_cer") == [(31 * 2 / 60, 0.6), (61 * 2 / 60, 0.4)]
    # dev-loss rows carry no time: that of the step's last training row
    assert dev_curve(run / "lm_multi", "asr", None) == [(1.0, 1.5), (2.0, 1.2)]


def test_budget_curves_verb(tmp_path, run_cli):
    b1 = _run(tmp_path / "b1", {"all": 0.40, "de": 0.08}, 0.90, minutes=1)
    b4 = _run(tmp_path / "b4", {"all": 0.20, "de": 0.10}, 0.99, minutes=4)
    png, md = tmp_path / "page/curves.png", tmp_path / "page/curves.md"
    r = run_cli("budget-curves", f"4={b4}", f"1={b1}", "--out", png, "--md", md, "--targets", "all=10,15 de=5 lid=99")
    assert r.exit_code == 0, r.output
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    text = md.read_text()
    assert "![dev curves per budget](curves.png)" in text
    # runs are sorted by budget; all: 40 -> 20 (a = 0.5): 10% at budget 16 single-task, 15% at 4 * (20/15)^2 = 7.1 multitask
    assert "| ASR CER (all) ≤ 10% | single-task | 40.0 | 20.0 | 0.50 | 16 |" in text
    assert "| ASR CER (all) ≤ 15% | multitask | 40.0 | 20.0 | 0.50 | 7 |" in text
    assert "| ASR CER (de) ≤ 5% | single-task | 8.0 | 10.0 | 0.00 | not falling |" in text
    assert "| LID accuracy ≥ 99% | multitask | 90.0 | 99.0 |" in text and text.rstrip().endswith("| met |")


def test_budget_curves_bad_input(tmp_path, run_cli):
    b1 = _run(tmp_path / "b1", {"all": 0.4}, 0.9, minutes=1)
    for args, says in ((["x=" + str(b1), f"4={b1}"], "expected BUDGET=EXP_DIR"), ([f"1={b1}", f"4={tmp_path}/nope"], "no such exp dir"),
                       ([f"1={b1}", f"1={b1}"], "the same budget"), ([f"1={b1}", f"4={b1}", "--targets", "all=x"], "target 'all=x'"),
                       ([f"1={b1}", f"4={b1}", "--targets", "xx=5"], "target 'xx'")):
        r = run_cli("budget-curves", *args, "--out", tmp_path / "c.png")
        assert r.exit_code == 1 and says in r.output, r.output
    with pytest.raises(PolyspeechError, match="KEY=T"):
        parse_targets("all")
