"""`polyspeech report` on hand-made run dirs: the one error (no RESULTS.md), missing pieces left out
with a note, and a TTS sample whose prompt, judge transcript and scores are found by the recipe's
layout (the page as a browser sees it: tests/test_recipe_mini.py)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import soundfile as sf

from conftest import run_flat, tone

TABLE = "# RESULTS\n\n## Single-task vs multitask\n\n| metric | single-task | multitask |\n|---|---|---|\n| ASR CER % | 32.2 | 47.3 |\n"
# The smallest valid PNG: 1x1 pixel.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_dir_without_results_is_one_error_naming_it(tmp_path):
    result = run_flat("report", tmp_path)
    assert result.exit_code == 1
    assert str(tmp_path) in result.output and "no RESULTS.md" in result.output and "run.sh" in result.output
    assert not (tmp_path / "RESULTS.html").exists()


def test_missing_figure_and_no_tts_are_notes_not_errors(tmp_path):
    (tmp_path / "RESULTS.md").write_text(TABLE + "\n![training curves](RESULTS_curves.png)\n\n![confusion](RESULTS_confusion.png)\n"
                                         "\n<script>alert(1)</script>\n", encoding="utf-8")
    (tmp_path / "RESULTS_confusion.png").write_bytes(PNG)
    result = run_flat("report", tmp_path)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "RESULTS.html").read_text(encoding="utf-8")
    assert "<table>" in page and "<td>47.3</td>" in page
    assert 'src="data:image/png;base64,' in page and 'src="RESULTS_' not in page  # the one PNG there is embedded
    assert "RESULTS_curves.png is not beside" in page and "no TTS decode" in page  # what is missing says so
    assert "<script>" not in page  # RESULTS.md's raw HTML is shown as text, not run
    assert "<audio" not in page


def _wav(path: Path, seconds: float, freq: float) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, 16000, freq), 16000)
    return str(path)


def _tts_decode(exp: Path, name: str, ids: list[str], oracle: bool = False) -> Path:
    d = exp / name
    rows = [{"id": i, "task": "tts", "wav": _wav(d / "wav" / f"{i}.wav", 1.2, 300 + k), "reference_wav": _wav(d / "ref" / f"{i}.wav", 1.0, 200 + k),
             "speaker": "s1", "text": f"sentence {i}", "language": i.split("-")[0], "prompt": ids[(k + 1) % len(ids)]}
            for k, i in enumerate(ids)]
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (d / "decode.json").write_text(json.dumps({"key": {"inputs": [], "options": {"task": "tts", "oracle": "tokens" if oracle else None}}}), encoding="utf-8")
    return d


def _asr_decode(d: Path, source_cuts: Path, rows: list[dict]) -> None:
    d.mkdir(parents=True)
    (d / "results.jsonl").write_text("".join(json.dumps({"task": "asr", **r}) + "\n" for r in rows), encoding="utf-8")
    (d / "decode.json").write_text(json.dumps({"key": {"inputs": [{"path": "/elsewhere/exp/lm_asr/model.safetensors"},
                                                                  {"path": str(source_cuts)}], "options": {"task": "asr"}}}))


def test_tts_samples_with_prompt_judge_and_scores(tmp_path):
    (tmp_path / "RESULTS.md").write_text(TABLE, encoding="utf-8")
    exp = tmp_path / "exp"
    ids = ["en-1", "en-2", "de-1"]
    _tts_decode(exp / "lm_multi", "decode_tts_test", ids)
    (exp / "lm_multi" / "config.yaml").write_text("tasks: [asr, tts]\n")
    _tts_decode(exp / "lm_multi", "decode_tts_test_resynth", ids, oracle=True)
    # The judge's transcripts of the multitask audio: Lhotse's cut ids (`<id>-<n>`), and the input
    # recorded where the run was made (another absolute path: the run was moved since).
    _asr_decode(exp / "lm_asr" / "decode_asr_tts_multi", Path("/old/place/exp/lm_multi/decode_tts_test/cuts.jsonl.gz"),
                [{"id": f"{i}-{k}", "ref": "abcd", "hyp": "abxd"} for k, i in enumerate(ids)])
    _asr_decode(exp / "lm_asr" / "decode_asr_test", Path("/old/place/data/test.jsonl.gz"),
                [{"id": i, "ref": "abcd", "hyp": "abcd"} for i in ids])
    out = tmp_path / "page" / "p.html"
    result = run_flat("report", tmp_path, "--out", out, "--utts", "2")
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    samples = re.findall(r'<section class="sample" id="([^"]+)">(.*?)</section>', page, re.S)
    assert [uid for uid, _ in samples] == ["en-1", "de-1"]  # one language after the other
    rows = [re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], re.S) for _, body in samples]
    assert [len(r) for r in rows] == [4, 4]  # prompt, real recording, multitask, resynthesized
    first = rows[0]
    assert "prompt (en-2)" in first[0] and "data:audio/wav;base64," in first[0]  # the prompt cut's recording, from ref/
    assert "<td>abcd</td><td>0.0</td>" in first[1]  # the judge on the real recording
    assert "multitask (lm_multi)" in first[2] and "<td>abxd</td><td>25.0</td>" in first[2]  # its transcript of the TTS audio, CER 1/4
    secs, mcd = re.findall(r"<td>([^<]*)</td>", first[2])[-2:]
    assert float(mcd) > 0 and -1 <= float(secs) <= 1
    assert "back end fed real data: tokens" in first[3] and "<td>–</td><td>–</td>" in first[3]  # no judge for it: no transcript, no CER
    assert "no ASR decode of its audio" in page  # ... and the page says so
    assert page.count("<audio") == 8


def test_waterfall_rows_read_one_judge_and_the_decode_it_heard(tmp_path):
    """`compare --waterfall`: each row's CER from the judge's decode of that row's audio, as a multiple
    of the real audio's; SECS and MCD from the TTS decode the judge's input cuts belong to."""
    exp = tmp_path / "exp"
    ids = ["en-1", "en-2", "de-1"]
    mel = _tts_decode(exp / "lm_multi", "decode_tts_test_mel", ids, oracle=True)
    _asr_decode(exp / "lm_asr" / "decode_asr_test", Path("/data/test.jsonl.gz"), [{"id": i, "ref": "abcd", "hyp": "abcx"} for i in ids])
    _asr_decode(exp / "lm_asr" / "decode_asr_tts_mel", mel / "cuts.jsonl.gz", [{"id": i, "ref": "abcd", "hyp": "abxx"} for i in ids])
    system = tmp_path / "scores.json"
    system.write_text(json.dumps({"decode_asr_test": {"task": "asr", "cer": {"all": 0.25}}}), encoding="utf-8")
    out = tmp_path / "RESULTS.md"
    result = run_flat("compare", f"multitask={system}", "--out", out, "--waterfall", f"real audio={exp / 'lm_asr' / 'decode_asr_test'}",
                      "--waterfall", f"its mel -> vocoder={exp / 'lm_asr' / 'decode_asr_tts_mel'}")
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").split("## TTS back end: where the words are lost")[1].strip().splitlines()
    assert lines[2] == "| real audio | 25.0 | 1.00× | – | – |"
    cells = [c.strip() for c in lines[3].split("|")[1:-1]]
    assert cells[:3] == ["its mel -> vocoder", "50.0", "2.00×"]
    assert -1 <= float(cells[3]) <= 1 and float(cells[4]) > 0  # SECS and MCD of the mel decode's audio
    bad = run_flat("compare", f"multitask={system}", "--out", tmp_path / "R2.md", "--waterfall", f"x={tmp_path / 'nothing'}")
    assert bad.exit_code == 1 and "nothing" in bad.output and not (tmp_path / "R2.md").exists()
