"""`polyspeech score`: CER/WER counts, accuracy and confusion, RESULTS.md, and bad decode dirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyspeech_cli.score.asr import count_errors, score_asr
from polyspeech_cli.score.classify import score_classes


def write_results(d: Path, rows: list[dict]) -> Path:
    d.mkdir(parents=True)
    (d / "results.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return d


def test_error_counts_by_hand():
    # ref "a b c d", hyp "a x c d e": 1 substitution, 1 insertion, 3 hits.
    c = count_errors(["a b c d"], ["a x c d e"], "word")
    assert (c.tokens, c.hits, c.substitutions, c.deletions, c.insertions, c.sentence_errors) == (4, 3, 1, 0, 1, 1)
    assert c.error_rate == pytest.approx(0.5)
    # Characters ignore spaces: Mandarin has none, and a split word is not a character error.
    cer = count_errors(["你好世界", "ab cd"], ["你好时间", "abcd"], "char")
    assert (cer.tokens, cer.substitutions, cer.sentence_errors) == (8, 2, 1)
    # An empty reference counts its hypothesis as insertions instead of crashing.
    empty = count_errors(["", "a"], ["x y", "a"], "word")
    assert (empty.tokens, empty.insertions) == (1, 2)


def test_asr_table_per_language():
    rows = [
        {"id": "1", "task": "asr", "ref": "hello world", "hyp": "hello word", "language": "en"},
        {"id": "2", "task": "asr", "ref": "你好", "hyp": "你好", "language": "zh"},
    ]
    res = score_asr(rows, "decode_asr_test")
    assert res["cer"]["zh"] == 0 and res["cer"]["en"] == pytest.approx(1 / 10)
    assert res["wer"]["en"] == pytest.approx(0.5)
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in res["markdown"]
    assert "|decode_asr_test/en|1|10|90.0|0.0|10.0|0.0|10.0|100.0|" in res["markdown"]


def test_classes_accuracy_and_confusion():
    rows = [{"id": str(i), "task": "lid", "ref": r, "hyp": h} for i, (r, h) in enumerate([("en", "en"), ("en", "de"), ("de", "de"), ("zh", "zh")])]
    res = score_classes(rows, "decode_lid_test")
    assert res["accuracy"] == pytest.approx(0.75)
    assert res["labels"] == ["de", "en", "zh"] and res["matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert res["per_class"]["de"]["precision"] == pytest.approx(0.5) and res["per_class"]["en"]["recall"] == pytest.approx(0.5)


def test_score_cli_writes_results_md_and_png(tmp_path, run_cli):
    asr = write_results(tmp_path / "exp" / "decode_asr_test", [{"id": "1", "task": "asr", "ref": "a b", "hyp": "a b", "language": "en"}])
    gid = write_results(tmp_path / "exp" / "decode_gid_test", [{"id": "1", "task": "gid", "ref": "M", "hyp": "F"}, {"id": "2", "task": "gid", "ref": "F", "hyp": "F"}])
    result = run_cli("score", asr, gid)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "exp" / "RESULTS.md").read_text()
    assert "## Environment" in text and "torch:" in text and "git hash" in text
    assert "## decode_gid_test" in text and "|decode_gid_test|2|50.0|" in text
    png = tmp_path / "exp" / "RESULTS_confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = json.loads((tmp_path / "exp" / "scores.json").read_text())
    assert scores["decode_asr_test"]["cer"]["all"] == 0


def test_bad_decode_dirs(tmp_path, run_cli):
    missing = run_cli("score", tmp_path / "decode_asr_x")
    assert missing.exit_code == 1 and "results.jsonl: not found" in " ".join(missing.output.split())
    broken = write_results(tmp_path / "decode_asr_y", [{"id": "1", "task": "asr", "ref": "a"}])
    result = run_cli("score", broken)
    assert result.exit_code == 1 and "lacks hyp" in result.output
    assert not (tmp_path / "RESULTS.md").exists()


def test_secs_with_pretrained_encoder(tmp_path, shared_dir):
    """SECS of a speaker's own other utterance beats SECS across speakers (resemblyzer, offline)."""
    pytest.importorskip("resemblyzer", reason="the eval extra (resemblyzer) is not installed")
    from polyspeech_cli.score.secs import score_secs

    audio = sorted((shared_dir / "data" / "speechocean762_train" / "audio").glob("*.flac"))
    a1, a2, b1, b2 = audio[0], audio[1], audio[-1], audio[-2]  # two utterances of each of two speakers
    rows = [
        {"id": "1", "task": "tts", "wav": str(a2), "reference_wav": str(a1), "speaker": "A"},
        {"id": "2", "task": "tts", "wav": str(b2), "reference_wav": str(b1), "speaker": "B"},
    ]
    res = score_secs(rows, "decode_tts_test")
    assert res["secs"] > res["secs_between_speakers"]
