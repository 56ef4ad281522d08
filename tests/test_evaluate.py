"""`polyspeech evaluate`: a trained LM exp dir on a cut set, on a manifest.tsv folder at another
sample rate, and on a real shared set; which tasks run (labels), what RESULTS.md/scores.json hold,
and bad input (one error line, nothing left under --out-dir).

The model is test_decode's tiny trained system (LM + untrained codec and speech decoder in the
recipe's exp layout); quality is not the point, the path is.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import soundfile as sf
from conftest import HEADER, run_flat
from lhotse import CutSet
import test_decode
from test_decode import SR, _voice

from polyspeech_cli.evaluate import set_name

# test_decode's session fixture (a tiny trained system), registered here under a name of its own
trained = test_decode.system


def assert_clean_failure(result, out: Path, *needles: str) -> None:
    """Exit != 0, one error line saying what is wrong, and no --out-dir left behind."""
    assert result.exit_code != 0, result.output
    assert result.output.count("error:") == 1, result.output
    for needle in needles:
        assert needle in result.output, f"{needle!r} not in {result.output!r}"
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


def scores_of(out: Path) -> dict:
    return json.loads((out / "scores.json").read_text(encoding="utf-8"))


def strip_labels(cuts_path: Path, dest: Path, **fields) -> Path:
    """A copy of a cut set with supervision fields replaced (e.g. text=None: a set without transcripts)."""
    cuts = [c.map_supervisions(lambda s: dataclasses.replace(s, **fields)) for c in CutSet.from_file(cuts_path)]
    CutSet.from_cuts(cuts).to_file(dest)
    return dest


def test_set_names():
    assert set_name(Path("data/an4_cuts_test.jsonl.gz")) == "an4_test"
    assert set_name(Path("x/cuts.jsonl.gz")) == "cuts"


def test_cut_set_every_labelled_task(trained, tmp_path):
    """All four tasks of the model on a cut set with every label; TTS judged by an ASR model."""
    out = tmp_path / "eval"
    result = run_flat("evaluate", "--exp-dir", trained["exp"], "--cuts", trained["cuts"], "--out-dir", out, "--asr-judge", trained["exp"])
    assert result.exit_code == 0, result.output
    scores = scores_of(out)
    assert {s["task"] for s in scores.values()} == {"asr", "tts", "lid", "gid"}
    assert set(scores) == {f"decode_{t}_cuts" for t in ("asr", "tts", "lid", "gid")}
    # the decode dirs are under --out-dir, not in the model's exp dir
    assert all((out / name / "results.jsonl").is_file() for name in scores)
    assert not any(trained["exp"].glob("decode_*_cuts"))
    tts = scores["decode_tts_cuts"]
    assert tts["asr_judge"] == str(trained["exp"]) and 0 <= tts["tts_cer"]["all"]
    assert (out / "decode_asr_tts_cuts" / "results.jsonl").is_file()
    assert len((out / "decode_tts_cuts" / "results.jsonl").read_text().splitlines()) == 8
    assert 0.0 <= scores["decode_lid_cuts"]["accuracy"] <= 1.0 and scores["decode_lid_cuts"]["unknown_languages"] == {}
    # features were recomputed as the model's features.json says
    feats = CutSet.from_file(out / "data" / "fbank" / "cuts.jsonl.gz")
    assert len(feats) == 8 and all(c.has_features and c.num_features == 80 for c in feats)
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    for needle in ("## Evaluation", "## decode_asr_cuts", "## decode_tts_cuts", "TTS intelligibility", "RESULTS_confusion.png"):
        assert needle in md, needle
    assert (out / "RESULTS_confusion.png").is_file()


def test_asr_with_an_ngram(trained, tmp_path):
    """--ngram: the ASR decode fuses it (beam 8, weight 0.3 unless --lm-weight); a missing file fails first."""
    ngram = tmp_path / "ngram.json"
    assert run_flat("train", "ngram", "--train-cuts", trained["cuts"], "--out", ngram).exit_code == 0
    out = tmp_path / "eval"
    result = run_flat("evaluate", "--exp-dir", trained["exp"], "--cuts", trained["cuts"], "--out-dir", out, "--tasks", "asr", "--ngram", ngram)
    assert result.exit_code == 0, result.output
    options = json.loads((out / "decode_asr_cuts" / "decode.json").read_text())["key"]["options"]
    assert (options["ngram"], options["lm_weight"], options["beam_size"]) == (str(ngram), 0.3, 8)
    assert_clean_failure(run_flat("evaluate", "--exp-dir", trained["exp"], "--cuts", trained["cuts"], "--out-dir", tmp_path / "e2",
                                  "--tasks", "asr", "--ngram", tmp_path / "none.json"), tmp_path / "e2", "none.json", "train ngram")


def test_set_without_text_gets_no_asr_row(trained, tmp_path):
    """No transcripts: LID and GID only, a note for ASR and TTS; a re-run reuses every finished stage."""
    cuts = strip_labels(trained["cuts"], tmp_path / "notext_cuts_test.jsonl.gz", text=None)
    out = tmp_path / "eval"
    result = run_flat("evaluate", "--exp-dir", trained["exp"], "--cuts", cuts, "--out-dir", out)
    assert result.exit_code == 0, result.output
    scores = scores_of(out)
    assert sorted(scores) == ["decode_gid_notext_test", "decode_lid_notext_test"]
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "decode_asr" not in md and "asr is not evaluated" in md and "tts is not evaluated" in md
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("decode_*/decode.json")}
    again = run_flat("evaluate", "--exp-dir", trained["exp"], "--cuts", cuts, "--out-dir", out)
    assert again.exit_code == 0 and "already decoded" in again.output and "nothing to do" in again.output
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("decode_*/decode.json")}
    assert scores_of(out)["decode_lid_notext_test"]["accuracy"] == scores["decode_lid_notext_test"]["accuracy"]
    # asked for explicitly, a task without labels is an error (and a new --out-dir stays absent)
    assert_clean_failure(run_flat("evaluate", "--exp-dir", trained["exp"], "--cuts", cuts, "--out-dir", tmp_path / "e2", "--tasks", "asr"),
                         tmp_path / "e2", "--tasks asr", "text")


def test_cut_set_at_another_rate_is_resampled(trained, tmp_path):
    """--cuts at 8 kHz: a resampled copy (the model's 16 kHz) is what features are computed from."""
    cuts8k = tmp_path / "low_cuts_test.jsonl.gz"
    CutSet.from_cuts(c.resample(8000) for c in CutSet.from_file(trained["cuts"])).to_file(cuts8k)
    out = tmp_path / "eval"
    result = run_flat("evaluate", "--exp-dir", trained["exp"], "--cuts", cuts8k, "--out-dir", out, "--tasks", "lid")
    assert result.exit_code == 0, result.output
    assert {c.sampling_rate for c in CutSet.from_file(out / "data" / "input" / cuts8k.name)} == {16000}
    feats = CutSet.from_file(out / "data" / "fbank" / cuts8k.name)
    assert {c.sampling_rate for c in feats} == {16000} and all(c.has_features for c in feats)
    assert list(scores_of(out)) == ["decode_lid_low_test"]
    assert "resampled to 16000 Hz" in (out / "RESULTS.md").read_text(encoding="utf-8")


def write_tsv_set(root: Path, sr: int) -> Path:
    """A manifest.tsv folder at `sr` Hz: two known languages (en, de) and one the model never saw (fr)."""
    rows = [("a1", "anna", "F", "en", "Good day!"), ("a2", "anna", "F", "en", "The old house."),
            ("b1", "bert", "M", "de", "Guten Tag."), ("b2", "bert", "M", "de", "Das alte Haus."),
            ("c1", "claude", "M", "fr", "Bonjour."), ("c2", "claude", "M", "fr", "La maison.")]
    (root / "audio").mkdir(parents=True)
    lines = [HEADER]
    for i, (utt, spk, gender, lang, text) in enumerate(rows):
        wave = _voice(110.0 + 25 * i, 1.3, i)[:: SR // sr]  # an 8 kHz signal (its content is far below 4 kHz)
        sf.write(root / "audio" / f"{utt}.flac", wave, sr)
        lines.append(f"{utt}\taudio/{utt}.flac\t{spk}\t{gender}\t{lang}\t{len(wave) / sr:.3f}\t{text}\n")
    (root / "manifest.tsv").write_text("".join(lines), encoding="utf-8")
    return root


def test_tsv_folder_at_8khz(trained, tmp_path):
    """--tsv: prepared as a test-only set at the model's 16 kHz; a language the model does not know is
    reported (LID counts it as errors, TTS leaves it out), not a crash."""
    corpus = write_tsv_set(tmp_path / "mixed8k", 8000)
    out = tmp_path / "eval"
    result = run_flat("evaluate", "--exp-dir", trained["exp"], "--tsv", corpus, "--out-dir", out)
    assert result.exit_code == 0, result.output
    prepared = sorted(p.name for p in (out / "data").glob("mixed8k_*.jsonl.gz"))
    assert prepared == ["mixed8k_cuts_test.jsonl.gz", "mixed8k_recordings_test.jsonl.gz", "mixed8k_supervisions_test.jsonl.gz"]
    cuts = CutSet.from_file(out / "data" / "fbank" / "mixed8k_cuts_test.jsonl.gz")
    assert len(cuts) == 6 and {c.sampling_rate for c in cuts} == {16000}
    assert all(c.num_features == 80 for c in cuts)
    scores = scores_of(out)
    assert set(scores) == {f"decode_{t}_mixed8k" for t in ("asr", "tts", "lid", "gid")}
    lid = scores["decode_lid_mixed8k"]
    assert lid["unknown_languages"] == {"fr": 2} and lid["per_class"]["fr"]["recall"] == 0.0
    tts_rows = [json.loads(ln) for ln in (out / "decode_tts_mixed8k" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["language"] for r in tts_rows) == ["de", "de", "en", "en"]
    md = " ".join((out / "RESULTS.md").read_text(encoding="utf-8").split())
    assert "fr (2 utts)" in md and "tts leaves out 2 utterance(s) in 'fr'" in md
    assert "prepared as a test-only set" in md


def test_shared_an4_mini(shared_dir, trained, tmp_path):
    """A real set from ../shared: every speaker has one utterance, so TTS has no prompt and is left out."""
    an4 = shared_dir / "data" / "an4_mini"
    if not (an4 / "manifest.tsv").is_file():
        pytest.skip(f"{an4} not found")
    out = tmp_path / "eval"
    result = run_flat("evaluate", "--exp-dir", trained["exp"], "--tsv", an4, "--out-dir", out)
    assert result.exit_code == 0, result.output
    scores = scores_of(out)
    assert set(scores) == {"decode_asr_an4_mini", "decode_lid_an4_mini", "decode_gid_an4_mini"}
    n = len((an4 / "manifest.tsv").read_text(encoding="utf-8").strip().splitlines()) - 1
    assert len((out / "decode_asr_an4_mini" / "results.jsonl").read_text().splitlines()) == n
    assert scores["decode_lid_an4_mini"]["unknown_languages"] == {}
    assert "tts is not evaluated" in (out / "RESULTS.md").read_text(encoding="utf-8")


def test_bad_input(trained, tmp_path):
    """Each is one error line naming the file or option and the fix, and leaves no --out-dir."""
    exp, out = trained["exp"], tmp_path / "eval"
    broken = tmp_path / "exp_broken"
    broken.mkdir()
    (broken / "config.yaml").write_text((exp / "config.yaml").read_text())
    assert_clean_failure(run_flat("evaluate", "--exp-dir", broken, "--cuts", trained["cuts"], "--out-dir", out), out, "vocab.json")
    assert_clean_failure(run_flat("evaluate", "--exp-dir", exp, "--out-dir", out), out, "--cuts", "--tsv")
    empty = tmp_path / "empty_cuts.jsonl.gz"
    CutSet.from_cuts([]).to_file(empty)
    assert_clean_failure(run_flat("evaluate", "--exp-dir", exp, "--cuts", empty, "--out-dir", out), out, str(empty), "no cuts")
    bare = strip_labels(trained["cuts"], tmp_path / "bare_cuts.jsonl.gz", text=None, language=None, gender=None)
    assert_clean_failure(run_flat("evaluate", "--exp-dir", exp, "--cuts", bare, "--out-dir", out), out, str(bare), "no cut carries labels")
    assert_clean_failure(run_flat("evaluate", "--exp-dir", exp, "--cuts", trained["cuts"], "--out-dir", out, "--tasks", "asr,xyz"),
                         out, "unknown task 'xyz'")
    # --tsv prepares into --out-dir before the labels are known: a failure removes it again
    corpus = write_tsv_set(tmp_path / "nogender", 16000)
    tsv = corpus / "manifest.tsv"
    tsv.write_text("".join(ln.replace("\tF\t", "\t\t").replace("\tM\t", "\t\t") for ln in tsv.read_text().splitlines(True)))
    assert_clean_failure(run_flat("evaluate", "--exp-dir", exp, "--tsv", corpus, "--out-dir", out, "--tasks", "gid"), out, "--tasks gid", "gender")
    # an existing --out-dir keeps what it held, and gets nothing new
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_flat("evaluate", "--exp-dir", exp, "--tsv", corpus, "--out-dir", out, "--tasks", "gid")
    assert result.exit_code != 0 and sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_whisper_judge(trained, tmp_path):
    """--asr-judge whisper:DIR (a tiny random Whisper saved locally: the path, not the quality): its CER on the
    synthesized audio under the TTS result, and beside it its CER on the real audio of the same utterances."""
    pytest.importorskip("transformers", reason="the Whisper judge runs on transformers")
    from test_whisper_judge import tiny_whisper

    model = tiny_whisper(tmp_path / "whisper")
    out = tmp_path / "eval"
    result = run_flat("evaluate", "--exp-dir", trained["exp"], "--cuts", trained["cuts"], "--out-dir", out, "--tasks", "tts",
                      "--asr-judge", f"whisper:{model}")
    assert result.exit_code == 0, result.output
    tts = scores_of(out)["decode_tts_cuts"]
    assert "Whisper" in tts["asr_judge"] and 0 <= tts["tts_cer"]["all"] and 0 <= tts["judge_real_cer"]["all"]
    assert (out / "decode_asr_tts_cuts_whisper" / "results.jsonl").is_file()
    assert (out / "decode_asr_real_cuts_whisper" / "results.jsonl").is_file()
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "TTS intelligibility" in md and "CER on the real audio of the same utterances" in md
    # a judge that cannot load fails before any work, in one line
    assert_clean_failure(run_flat("evaluate", "--exp-dir", trained["exp"], "--cuts", trained["cuts"], "--out-dir", tmp_path / "e2",
                                  "--tasks", "tts", "--asr-judge", f"whisper:{tmp_path / 'nowhere'}"), tmp_path / "e2", "no such directory")
