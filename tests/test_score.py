"""`polyspeech score`: CER/WER counts, accuracy and confusion, RESULTS.md, and bad decode dirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    # The same decodes again: nothing to do (RESULTS.md untouched); a re-decoded set is scored again.
    before = (tmp_path / "exp" / "RESULTS.md").stat().st_mtime_ns
    again = run_cli("score", asr, gid)
    assert again.exit_code == 0 and "nothing to do" in again.output and "accuracy 50.0%" in again.output
    assert (tmp_path / "exp" / "RESULTS.md").stat().st_mtime_ns == before
    (gid / "results.jsonl").write_text(json.dumps({"id": "1", "task": "gid", "ref": "M", "hyp": "M"}) + "\n")
    rescored = run_cli("score", asr, gid)
    assert rescored.exit_code == 0 and "nothing to do" not in rescored.output and "accuracy 100.0%" in rescored.output
    # Another report in the same folder gets its own JSON: scores.json stays RESULTS.md's.
    assert run_cli("score", asr, "--out", tmp_path / "exp" / "asr_only.md").exit_code == 0
    assert set(json.loads((tmp_path / "exp" / "asr_only_scores.json").read_text())) == {"decode_asr_test"}
    assert set(json.loads((tmp_path / "exp" / "scores.json").read_text())) == {"decode_asr_test", "decode_gid_test"}


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


def _scores(asr_cer: dict, secs: float, lid: float, gid: float) -> dict:
    cls = {"labels": ["F", "M"], "matrix": [[1, 0], [0, 1]]}
    return {"decode_asr_test": {"task": "asr", "cer": asr_cer}, "decode_tts_test": {"task": "tts", "secs": secs, "secs_between_speakers": 0.5},
            "decode_lid_test": {"task": "lid", "accuracy": lid, **cls}, "decode_gid_test": {"task": "gid", "accuracy": gid, **cls}}


def _train_log(d: Path, rows: list[str]) -> Path:
    d.mkdir(parents=True)
    header = "step,split,task,task_steps,loss,ce,ctc,metric,value,lr,hours_seen,elapsed_s\n"
    (d / "train_log.csv").write_text(header + "".join(r + "\n" for r in rows))
    return d


def test_compare_table_bars_budgets_and_figures(tmp_path, run_cli):
    single, multi = tmp_path / "single.json", tmp_path / "multi.json"
    single.write_text(json.dumps(_scores({"all": 0.10, "en": 0.08, "zh": 0.20}, 0.8, 0.99, 1.0)))
    multi.write_text(json.dumps(_scores({"all": 0.12, "en": 0.10, "zh": 0.14}, 0.4, 0.99, 0.98)))
    # TTS intelligibility is an explicit input: a scores.json with one ASR entry, or an ASR decode dir.
    (tmp_path / "judge_single.json").write_text(json.dumps({"decode_asr_a": {"task": "asr", "cer": {"all": 0.25}}}))
    (tmp_path / "judge_multi.json").write_text(json.dumps({"whatever": {"task": "asr", "cer": {"all": 0.26}}}))
    judge_resynth = write_results(tmp_path / "judged", [{"id": "1", "task": "asr", "ref": "abcde", "hyp": "abcdx", "language": "en"}])
    bars = tmp_path / "bars.yaml"
    bars.write_text("asr_cer_max: 15\nlid_accuracy_min: 98\ngid_accuracy_min: 99\ntts_cer_max: 30\n"
                    "tts_secs_above_between_speakers: true\nrelative_to_first: 0.10\nasr_cer_max_per_language: {zh: 25}\n"
                    "no_worse_than_first: [LID accuracy %, GID accuracy %]\n")
    lm_multi = _train_log(tmp_path / "lm_multi", ["10,train,asr,6,2.0,2.0,,,,1e-3,0.1,5", "10,train,lid,4,1.0,1.0,,,,1e-3,0.1,5",
                                                  "10,dev,asr,6,,,,asr_cer,0.9,,,6"])
    lm_asr = _train_log(tmp_path / "lm_asr", ["6,train,asr,6,1.5,1.5,,,,1e-3,0.05,3"])
    notes = tmp_path / "notes.md"
    notes.write_text("## What limits these numbers\n\nCPU time.\n")
    out = tmp_path / "RESULTS.md"
    args = ["compare", f"single-task={single}", f"multitask={multi}", "--out", out, "--lm-dir", lm_multi, "--lm-dir", lm_asr,
            "--tts-asr", f"single-task={tmp_path / 'judge_single.json'}", "--tts-asr", f"multitask={tmp_path / 'judge_multi.json'}"]
    assert run_cli(*args, "--notes", tmp_path / "nope.md").exit_code == 1 and not out.exists()  # checked before writing
    typo = tmp_path / "typo.yaml"
    typo.write_text("asr_cer_maxx: 15\n")
    r = run_cli(*args, "--bars", typo)
    assert r.exit_code == 1 and "asr_cer_maxx" in r.output and not out.exists()
    r = run_cli(*args, "--tts-asr", f"nobody={judge_resynth}")
    assert r.exit_code == 1 and "nobody" in r.output and not out.exists()
    ref = tmp_path / "resynth.json"
    ref.write_text(json.dumps({"decode_tts_test_resynth": {"task": "tts", "secs": 0.7, "secs_between_speakers": 0.5}}))
    r = run_cli(*args, "--tts-judge", "nobody")
    assert r.exit_code == 1 and "nobody" in r.output and not out.exists()
    r = run_cli(*args, "--notes", notes, "--reference", f"resynth={ref}", "--tts-asr", f"resynth={judge_resynth}", "--bars", bars,
                "--tts-judge", "single-task")
    assert r.exit_code == 0, r.output
    text = out.read_text()
    reference = text[text.index("## Reference: resynth") : text.index("## Quality bars")]
    assert "| TTS CER % | 20.0 |" in reference and "| TTS SECS | 0.700 |" in reference and "ASR CER" not in reference
    rows = {ln.split(" | ")[0].lstrip("| "): ln for ln in text.splitlines() if ln.startswith("| ")}
    assert rows["ASR CER %"] == "| ASR CER % | 10.0 | 12.0 |"
    assert "✓ 8.0 | ✓ 10.0" in rows["ASR CER ≤ 15% (en)"] and "✓ 20.0 | ✓ 14.0" in rows["ASR CER ≤ 25% (zh)"]
    assert "its CER on the real test audio is 10.0%" in text  # the TTS judge's own ASR CER
    assert "✗ 98.0 vs 100.0" in rows["GID accuracy %: no worse than single-task"] and "✓" in rows["LID accuracy %: no worse than single-task"]
    assert "✓ 100.0 | ✗ 98.0" in rows["GID accuracy ≥ 99%"]
    assert "✓ 0.800 vs 0.500 | ✗ 0.400 vs 0.500" in rows["TTS SECS above SECS of different real speakers"]
    assert "✗ +20.0%" in rows["ASR CER %: within 10% relative of single-task"]  # 12 vs 10: 20% worse
    assert "✓ +4.0%" in rows["TTS CER %: within 10% relative of single-task"]
    assert "✗ -50.0%" in rows["TTS SECS: within 10% relative of single-task"]
    assert rows["lm_multi"].startswith("| lm_multi | asr,lid | 10 | asr 6, lid 4 | 10 | 0.10 | 5 |")
    assert text.rstrip().endswith("CPU time.")
    for png in ("RESULTS_curves.png", "RESULTS_confusion.png"):
        assert f"({png})" in text and (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    # No --bars: no bar table; no --tts-asr: no TTS CER, whatever the decode dirs are called.
    r = run_cli("compare", f"single-task={single}", f"multitask={multi}", "--out", out)
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "## Quality bars" not in text and "| TTS CER % | – | – |" in text


def test_compare_refuses_two_asr_decodes_in_one_system(tmp_path, run_cli):
    scores = _scores({"all": 0.1}, 0.8, 0.99, 1.0) | {"decode_asr_tts_x": {"task": "asr", "cer": {"all": 0.3}}}
    (tmp_path / "s.json").write_text(json.dumps(scores))
    r = run_cli("compare", f"a={tmp_path / 's.json'}", "--out", tmp_path / "R.md")
    assert r.exit_code == 1 and "--tts-asr" in r.output and "2 ASR decodes" in r.output


def _tones(freqs: list[float], seconds: float, rate: int, lead: float, seed: int) -> np.ndarray:
    """A sequence of harmonic tones after `lead` s of silence, over faint noise (like a recording's floor)."""
    parts = [np.zeros(int(lead * rate))]
    for f in freqs:
        t = np.arange(int(seconds * rate)) / rate
        parts.append(sum(0.3 / h * np.sin(2 * np.pi * f * h * t) for h in (1, 2, 3)))
    x = np.concatenate(parts)
    return (x + 1e-3 * np.random.default_rng(seed).standard_normal(len(x))).astype(np.float32)


def test_mcd_dtw_identical_delayed_and_different():
    """DTW-aligned MCD: 0 for identical audio, small for the same tones slower and later, large otherwise."""
    from polyspeech_cli.errors import PolyspeechError
    from polyspeech_cli.score.mcd import MCD_SCALE, dtw_mcd, mel_cepstrum

    ref = _tones([220, 330, 440, 550, 660], 0.3, 22050, lead=0.1, seed=0)
    stretched = _tones([220, 330, 440, 550, 660], 0.36, 22050, lead=0.4, seed=1)  # 20% slower, 0.3 s later
    other = _tones([700, 300, 900, 250, 500], 0.3, 22050, lead=0.1, seed=2)
    noise = 0.1 * np.random.default_rng(3).standard_normal(len(ref)).astype(np.float32)
    mc = mel_cepstrum(ref, 22050)
    assert mc.shape == (int(len(ref) / 22050 * 100) + 1, 13)  # 10 ms hop at 16 kHz, c1..c13
    assert dtw_mcd(mc, mel_cepstrum(ref, 22050)) == pytest.approx(0, abs=1e-9)
    near = dtw_mcd(mc, mel_cepstrum(stretched, 22050))
    assert near < 0.25 * dtw_mcd(mc, mel_cepstrum(other, 22050)) and near < 0.25 * dtw_mcd(mc, mel_cepstrum(noise, 22050))
    # DTW by hand: repeated frames align at no cost; one frame pair is the formula itself.
    frames = np.random.default_rng(4).standard_normal((20, 13))
    assert dtw_mcd(frames, np.repeat(frames, 3, axis=0)) == pytest.approx(0, abs=1e-12)
    assert dtw_mcd(frames[:1], frames[1:2]) == pytest.approx(10 / np.log(10) * np.sqrt(2) * np.linalg.norm(frames[0] - frames[1]))
    assert MCD_SCALE == pytest.approx(6.1418, abs=1e-4)
    with pytest.raises(PolyspeechError, match="same dims"):
        dtw_mcd(frames, frames[:, :5])


def test_score_tts_mcd_into_scores_json_and_compare(tmp_path, run_cli, monkeypatch):
    """`polyspeech score` of a TTS decode writes `mcd` (rows without a reference skipped and counted);
    `compare` shows the TTS MCD row for systems and references, lower is better in the relative bar."""
    import soundfile as sf

    # SECS is the pretrained encoder's business (test_secs_with_pretrained_encoder); here fixed embeddings.
    monkeypatch.setattr("polyspeech_cli.score.secs.embed_files", lambda paths: {p: np.array([1.0, 0.0]) for p in paths})
    d = tmp_path / "exp" / "decode_tts_test"
    (d / "wav").mkdir(parents=True)
    (d / "ref").mkdir()
    sf.write(d / "ref" / "a.wav", _tones([220, 330, 440], 0.3, 16000, 0.1, 0), 16000)
    sf.write(d / "wav" / "a.wav", _tones([220, 330, 440], 0.3, 22050, 0.1, 0), 22050)  # the same at another rate
    sf.write(d / "ref" / "b.wav", _tones([300, 600, 450], 0.3, 16000, 0.1, 1), 16000)
    sf.write(d / "wav" / "b.wav", _tones([800, 250, 350], 0.3, 22050, 0.1, 2), 22050)
    rows = [{"id": i, "task": "tts", "wav": str(d / "wav" / f"{i}.wav"), "reference_wav": str(d / "ref" / f"{i}.wav"), "speaker": i}
            for i in ("a", "b")]
    rows.append({"id": "c", "task": "tts", "wav": str(d / "wav" / "a.wav"), "reference_wav": None, "speaker": "c"})
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run_cli("score", d)
    assert r.exit_code == 0, r.output
    scores = json.loads((tmp_path / "exp" / "scores.json").read_text())
    tts = scores["decode_tts_test"]
    assert tts["mcd_utterances"] == 2 and tts["no_reference"] == 1 and tts["mcd"] > 1  # mean of ~0 (a) and a large MCD (b)
    text = (tmp_path / "exp" / "RESULTS.md").read_text()
    assert f"|decode_tts_test|2|1.000|1.000|{tts['mcd']:.2f}|" in text and "1 of 3 utterances have no reference_wav" in text
    worse, ref = tmp_path / "worse.json", tmp_path / "resynth.json"
    worse.write_text(json.dumps({"decode_tts_test": {**tts, "mcd": 1.5 * tts["mcd"]}}))
    ref.write_text(json.dumps({"decode_tts_test_resynth": {**tts, "mcd": 0.5 * tts["mcd"]}}))
    old = tmp_path / "old.json"  # a scores.json from before MCD: its cell is "–"
    old.write_text(json.dumps({"decode_tts_test": {k: v for k, v in tts.items() if k != "mcd"}}))
    bars = tmp_path / "bars.yaml"
    bars.write_text("relative_to_first: 0.10\n")
    out = tmp_path / "RESULTS.md"
    r = run_cli("compare", f"single-task={tmp_path / 'exp' / 'scores.json'}", f"multitask={worse}", f"old={old}",
                "--reference", f"resynth={ref}", "--bars", bars, "--out", out)
    assert r.exit_code == 0, r.output
    text = out.read_text()
    table = {ln.split(" | ")[0].lstrip("| "): ln for ln in text[: text.index("## Reference")].splitlines() if ln.startswith("| ")}
    assert table["TTS MCD (dB)"] == f"| TTS MCD (dB) | {tts['mcd']:.2f} | {1.5 * tts['mcd']:.2f} | – |"
    assert f"| TTS MCD (dB) | {0.5 * tts['mcd']:.2f} |" in text[text.index("## Reference: resynth") : text.index("## Quality bars")]
    bar = next(ln for ln in text.splitlines() if ln.startswith("| TTS MCD (dB): within 10% relative"))
    assert bar.endswith("| (reference) | ✗ +50.0% | – |")  # a higher MCD is worse
    worse.write_text(json.dumps({"decode_tts_test": {**tts, "mcd": 0.5 * tts["mcd"]}}))
    r = run_cli("compare", f"single-task={tmp_path / 'exp' / 'scores.json'}", f"multitask={worse}", "--bars", bars, "--out", out)
    assert r.exit_code == 0, r.output
    assert "| TTS MCD (dB): within 10% relative of single-task | (reference) | ✓ -50.0% |" in out.read_text()


def test_score_tts_without_any_reference_is_one_error(tmp_path, run_cli):
    d = write_results(tmp_path / "decode_tts_x", [{"id": "1", "task": "tts", "wav": str(tmp_path / "x.wav"), "reference_wav": None, "speaker": "A"}])
    r = run_cli("score", d)
    assert r.exit_code == 1 and "has a reference_wav" in r.output and not (tmp_path / "RESULTS.md").exists()


def test_sources_split_and_one_page(tmp_path, run_cli):
    """`split-scores` gives each source its own entries (TTS: the all-voices SECS line filled in);
    `compare-sources` puts the per-source `compare` pages on one page, every source side by side."""
    nan = float("nan")
    tts = {"task": "tts", "secs": 0.6, "secs_between_speakers": nan}
    scores = {"decode_tts_all": {**tts, "secs_between_speakers": 0.2}, "decode_tts_cathy": tts,
              "decode_lid_fsdd": {"task": "lid", "accuracy": 0.5}, "decode_lid_cathy": {"task": "lid", "accuracy": 0.75}}
    for system in ("multi", "single"):
        (tmp_path / "score" / "all" / system).mkdir(parents=True)
        (tmp_path / "score" / "all" / system / "scores.json").write_text(json.dumps(scores))
    r = run_cli("split-scores", "--score-dir", tmp_path / "score", "--sources", "cathy fsdd", "--line", "multi:decode_tts_all")
    assert r.exit_code == 0, r.output
    cathy = json.loads((tmp_path / "score" / "cathy" / "multi" / "scores.json").read_text())
    assert set(cathy) == {"decode_tts_cathy", "decode_lid_cathy"}
    assert cathy["decode_tts_cathy"]["secs_between_speakers"] == 0.2 and cathy["decode_tts_cathy"]["secs_between_speakers_from"] == "multi/decode_tts_all"
    assert set(json.loads((tmp_path / "score" / "fsdd" / "single" / "scores.json").read_text())) == {"decode_lid_fsdd"}
    bad = run_cli("split-scores", "--score-dir", tmp_path / "score", "--sources", "cathy", "--line", "multi:decode_lid_fsdd")
    assert bad.exit_code == 1 and "no TTS score over several speakers" in bad.output

    for src in ("cathy", "fsdd"):
        (tmp_path / "score" / src / "compare.md").write_text(f"# RESULTS\n\n## Environment\n\nenv line\n\n## {src}: single-task vs multitask\n\n"
                                                            "| metric |\n\n## Training budgets\n\n| model |\n")
    (tmp_path / "data").mkdir()
    out = tmp_path / "page" / "RESULTS.md"
    out.parent.mkdir()
    r = run_cli("compare-sources", "--sources", "cathy fsdd missing", "--score-dir", tmp_path / "score", "--data-dir", tmp_path / "data",
                "--out", out, "--title", "two sources", "--judge", "multitask")
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert page.startswith("# two sources\n") and page.count("env line") == 1 and page.count("| model |") == 1
    assert "### cathy: single-task vs multitask" in page and "## missing\n\n(not scored:" in page
    side = page.split("## Every source side by side")[1].split("\n## ")[0]
    assert "| cathy | – | 0.600 / 0.600 | 0.200 |" in side and "| fsdd |" in side and "the multitask ASR model" in side


def test_a_decode_is_scored_once_until_its_results_change(tmp_path, monkeypatch):
    """score_decodes keeps each decode dir's scores in the dir (score_cache.json): a second report
    over the same decode (the waterfall after `score`) reuses them; a re-decode is scored again."""
    from polyspeech_cli.score import report

    calls = []
    monkeypatch.setitem(report.SCORERS, "asr", lambda rows, name: calls.append(name) or score_asr(rows, name))
    d = write_results(tmp_path / "decode_asr_test", [{"id": "1", "task": "asr", "ref": "ab c", "hyp": "ab d", "language": "en"}])
    first = report.score_decodes([d])
    assert report.score_decodes([d]) == first and calls == ["decode_asr_test"]
    (d / "results.jsonl").write_text(json.dumps({"id": "1", "task": "asr", "ref": "ab c", "hyp": "ab c", "language": "en", "n": 2}) + "\n")
    again = report.score_decodes([d])
    assert len(calls) == 2 and again["decode_asr_test"]["cer"]["all"] == 0 < first["decode_asr_test"]["cer"]["all"]
