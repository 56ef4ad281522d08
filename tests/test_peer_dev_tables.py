"""egs/real's two result tables built by the package: `peer-table` (stage 8) and `dev-table` (local/dev_check.sh).

The expected rows are those the former `egs/real/local/peer_table.py` and `dev_table.py` wrote for the
same fabricated inputs, so a change to the numbers or the layout shows here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from polyspeech_cli.score.dev_sweep import write_dev_table
from polyspeech_cli.score.peer import PeerTable, write_peer_table

FIELDS = ("step", "split", "task", "task_steps", "loss", "ce", "ctc", "metric", "value", "lr", "hours_seen", "elapsed_s")


def _log(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in FIELDS} for r in rows)


def _peer_inputs(root: Path) -> PeerTable:
    from safetensors.numpy import save_file

    (root / "espnet").mkdir(parents=True)
    (root / "espnet/summary.json").write_text(json.dumps({"params": 27123456, "train_min": 61.27, "test_utts": 40, "CER": 0.2134,
                                                           "CER_nospace": 0.1987, "WER": 0.4561, "epochs": 35}))
    dec = root / "lm_asr/decode_asr_so_test"
    dec.mkdir(parents=True)
    rows = [("HELLO  WORLD", "HELO WORLD"), ("THE CAT SAT", "THE BAT  SAT ON"), ("  ", "X"), ("GOOD MORNING", "")]
    (dec / "results.jsonl").write_text("".join(json.dumps({"id": str(i), "task": "asr", "ref": r, "hyp": h, "language": "en"}) + "\n"
                                               for i, (r, h) in enumerate(rows)))
    save_file({"llm.w": np.zeros((3000, 7), np.float32), "adapter.b": np.zeros(13, np.float32), "rates": np.ones(4, np.float32),
               "feat_stats": np.zeros((2, 80), np.float32)}, str(root / "lm_asr/model.safetensors"))
    (root / "lm_asr/train_seconds").write_text("3723.4\n")
    _log(root / "lm_asr/train_log.csv", [{"step": 100, "split": "train", "elapsed_s": 1500.5},
                                         {"step": 3000, "split": "train", "elapsed_s": 3600.25}])
    return PeerTable(peer_summary=root / "espnet/summary.json", ours_decode=dec, ours_exp=root / "lm_asr",
                     ours_train_seconds=root / "lm_asr/train_seconds", out=root / "peer_table.md", train_desc="10 speakers",
                     ours_desc="`conf/x.yaml`", score_out=root / "score_jiwer.json")


def test_peer_table_numbers_and_verb(tmp_path, run_cli):
    t = _peer_inputs(tmp_path)
    table = write_peer_table(t)
    assert t.out.read_text() == table and table.endswith("CER with spaces removed.\n")
    assert "| ESPnet 202511 peer (35 epochs) | 27.12 | 61.3 | 40 | 21.3 | 19.9 | 45.6 |" in table
    # The empty reference is left out of the scores but counted as a test utterance; rates, feat_stats are no parameters.
    assert "| ours, single-task ASR LM (3000 steps) | 0.02 | 62.1 | 4 | 50.0 | 50.0 | 71.4 |" in table
    assert "Ours: `conf/x.yaml`." in table and "(60.0 min in the training loop)" in table
    ours = json.loads(t.score_out.read_text())
    assert ours["params"] == 3000 * 7 + 13 and ours["steps"] == 3000 and ours["WER"] == 5 / 7
    out = tmp_path / "via_cli.md"
    result = run_cli("peer-table", "--peer-summary", t.peer_summary, "--ours-decode", t.ours_decode, "--ours-exp", t.ours_exp,
                     "--ours-train-seconds", t.ours_train_seconds, "--train-desc", "10 speakers", "--ours-desc", "`conf/x.yaml`", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == t.out.read_bytes()
    assert "## speechocean762" in table and "side by side" in table  # egs/real's words by default; egs/mini names its own
    result = run_cli("peer-table", "--peer-summary", t.peer_summary, "--ours-decode", t.ours_decode, "--ours-exp", t.ours_exp,
                     "--ours-train-seconds", t.ours_train_seconds, "--out", out, "--title", "egs/mini: peer", "--setup", "one after the other")
    text = out.read_text()
    assert result.exit_code == 0 and text.startswith("## egs/mini: peer\n") and "speakers () one after the other;" in text


def _sweep(root: Path) -> Path:
    exp = root / "dev"
    for v in ("d0.1", "d0.1+sa"):
        (exp / f"lm_{v}").mkdir(parents=True)
        fused = {"decode_asr_so_dev_ngram0.3": {"cer": {"all": 0.2012}, "wer": {"all": 0.4}},
                 "decode_asr_so_dev_ngram0.5": {"cer": {"all": 0.1987}, "wer": {"all": 0.4}}} if v == "d0.1" else {}
        (exp / f"lm_{v}/scores.json").write_text(json.dumps({
            **fused, "decode_asr_so_dev": {"cer": {"all": 0.23456}, "wer": {"all": 0.5}},
            "decode_gid_dev": {"accuracy": 0.84, "matrix": [[10, 2], [2, 11]], "labels": ["F", "M"]}}))
        rows = [{"step": 100, "split": "train", "elapsed_s": 100.4}, {"step": 100, "split": "dev", "ce": 2.5, "metric": "gid_acc", "value": 0.6},
                {"step": 600, "split": "dev", "ce": 1.25, "metric": "asr_cer", "value": 0.41},
                {"step": 600, "split": "dev", "metric": "asr_ctc_cer", "value": 0.45},
                {"step": 1200, "split": "dev", "ce": 1.75 if v == "d0.1" else 1.0, "metric": "gid_acc", "value": 0.8},
                {"step": 1800, "split": "train", "elapsed_s": 1811.6}]
        _log(exp / f"lm_{v}/train_log.csv", [r for r in rows if v == "d0.1" or r.get("metric") != "asr_ctc_cer"])
    (exp / "lm_d0.2").mkdir()  # started, not finished: no scores.json
    return exp


def test_dev_tables_asr_and_gid(tmp_path, run_cli):
    exp = _sweep(tmp_path)
    variants = ["d0.1", "d0.1+sa", "d0.2"]
    asr = write_dev_table("asr", exp, "speechocean", "1800", tmp_path / "asr.md", variants)
    assert asr.startswith("# egs/real dev sweep: single-task ASR on speechocean762 (speechocean train set, 1800 steps)\n")
    assert asr.endswith("| d0.1 | 23.5 | 50.0 | 1812 | 1800 | 1.250 @ 600 | 1.750 | 0.410 / 0.450 | 0.3: 20.1, 0.5: 19.9 |\n"
                        "| d0.1+sa | 23.5 | 50.0 | 1812 | 1800 | 1.000 @ 1200 | 1.000 | 0.410 / nan | – |\n"
                        "| d0.2 | (not run) | | | | | | | |\n")
    gid = write_dev_table("gid", exp, "union", "600", tmp_path / "gid.md", variants)
    assert gid.endswith("|---|---|---|---|---|\n| d0.1 | 84.0 | [[10, 2], [2, 11]] (F/M) | 1812 | 0.60 0.80 |\n"
                        "| d0.1+sa | 84.0 | [[10, 2], [2, 11]] (F/M) | 1812 | 0.60 0.80 |\n| d0.2 | (not run) | | | |\n")
    assert (tmp_path / "gid.md").read_text() == gid
    result = run_cli("dev-table", "asr", exp, "speechocean", "1800", tmp_path / "asr_cli.md", *variants)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "asr_cli.md").read_bytes() == (tmp_path / "asr.md").read_bytes()


def test_bad_inputs_are_one_line_errors(tmp_path, run_cli):
    t = _peer_inputs(tmp_path)
    t.peer_summary.unlink()
    result = run_cli("peer-table", "--peer-summary", t.peer_summary, "--ours-decode", t.ours_decode, "--ours-exp", t.ours_exp,
                     "--ours-train-seconds", t.ours_train_seconds, "--out", t.out)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"ESPnet peer summary not found: {t.peer_summary}" in result.output and "run_peer.sh" in result.output
    assert not t.out.exists()
    exp = _sweep(tmp_path)
    (exp / "lm_d0.1/scores.json").write_text(json.dumps({"decode_asr_so_test": {}}))  # scored, but not the dev decode
    bad = run_cli("dev-table", "asr", exp, "speechocean", "1800", tmp_path / "asr.md", "d0.1")
    assert bad.exit_code == 1 and f"{exp / 'lm_d0.1/scores.json'}: no decode_asr_so_dev scores" in bad.output, bad.output
    none = run_cli("dev-table", "gid", exp, "union", "600", tmp_path / "gid.md", "d0.3")
    assert none.exit_code == 1 and "no variant of the sweep has scores" in none.output and "lm_d0.3" in none.output
    assert not (tmp_path / "asr.md").exists() and not (tmp_path / "gid.md").exists()
