"""`polyspeech prepare`: tsv and kaldi sources, splits, normalisation, re-runs, and bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import HEADER, make_tsv_corpus, tone
from lhotse import CutSet, load_manifest


def manifests(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.glob("*.jsonl.gz"))


def assert_clean_failure(result, data_dir: Path, *needles: str) -> None:
    """Non-zero exit, one error line naming what is wrong, and no manifest (or temp file) left."""
    assert result.exit_code != 0, result.output
    error_lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1, result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert needle in text, f"{needle!r} not in {result.output!r}"
    assert not data_dir.exists() or not any(data_dir.iterdir()), list(data_dir.iterdir())


def test_tsv_writes_lhotse_manifests_with_labels(tmp_path, run_cli):
    corpus = make_tsv_corpus(tmp_path / "mycorpus", n=10, speakers=2)
    data = tmp_path / "data"
    result = run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "0.6,0.2,0.2")
    assert result.exit_code == 0, result.output
    names = manifests(data)
    assert "mycorpus_cuts_train.jsonl.gz" in names and "mycorpus_recordings_train.jsonl.gz" in names
    cuts = CutSet.from_file(data / "mycorpus_cuts_train.jsonl.gz")
    sup = cuts[0].supervisions[0]
    assert sup.language == "en" and sup.gender in ("M", "F") and sup.speaker.startswith("spk")
    assert sup.text.startswith("hello world number")  # the default `asr` normalisation
    assert cuts[0].load_audio().shape[0] == 1
    total = sum(len(CutSet.from_file(data / f"mycorpus_cuts_{s}.jsonl.gz")) for s in ("train", "dev", "test") if (data / f"mycorpus_cuts_{s}.jsonl.gz").exists())
    assert total == 10
    assert "hours" in result.output and "train" in result.output


def test_resampling_and_rerun_does_nothing(tmp_path, run_cli):
    corpus = make_tsv_corpus(tmp_path / "c8k", n=4, speakers=1, sr=8000)
    data = tmp_path / "data"
    assert run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "1,0,0").exit_code == 0
    cut = CutSet.from_file(data / "c8k_cuts_train.jsonl.gz")[0]
    assert cut.sampling_rate == 16000
    assert cut.load_audio().shape[1] == pytest.approx(cut.duration * 16000, abs=2)
    before = {p: p.stat().st_mtime_ns for p in data.glob("*.jsonl.gz")}
    again = run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "1,0,0")
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert before == {p: p.stat().st_mtime_ns for p in data.glob("*.jsonl.gz")}
    # Changed options are not "already done".
    changed = run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "1,0,0", "--sample-rate", "0")
    assert changed.exit_code == 0 and "nothing to do" not in changed.output
    assert "changed: options.common.sample_rate" in " ".join(changed.output.split())
    assert CutSet.from_file(data / "c8k_cuts_train.jsonl.gz")[0].sampling_rate == 8000
    # A rewritten input (manifest.tsv) re-runs too; then the same command is a no-op again.
    tsv = corpus / "manifest.tsv"
    tsv.write_text(tsv.read_text(encoding="utf-8").replace("number 0", "number zero"), encoding="utf-8")
    rewritten = run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "1,0,0", "--sample-rate", "0")
    assert rewritten.exit_code == 0 and "changed: inputs" in " ".join(rewritten.output.split())
    assert any("number zero" in c.supervisions[0].text for c in CutSet.from_file(data / "c8k_cuts_train.jsonl.gz"))
    assert "nothing to do" in run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "1,0,0", "--sample-rate", "0").output
    assert "nothing to do" not in run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "1,0,0", "--sample-rate", "0", "--force").output


def test_mp3_flac_and_wav_at_8_16_and_22k_take_one_path(tmp_path, run_cli):
    """MP3 (22.05 kHz), WAV (8 kHz) and FLAC (16 kHz) in one folder: prepared at 16 kHz and turned
    into fbank by the same reader and resampler, each file's audio read back intact."""
    if "MP3" not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) has no MP3 support")
    root = tmp_path / "mixed"
    (root / "audio").mkdir(parents=True)
    files = {"u_mp3": ("mp3", 22050, 300.0), "u_wav": ("wav", 8000, 250.0), "u_flac": ("flac", 16000, 200.0)}
    lines = [HEADER]
    for utt, (ext, sr, freq) in files.items():
        sf.write(root / "audio" / f"{utt}.{ext}", tone(1.5, sr, freq), sr)
        lines.append(f"{utt}\taudio/{utt}.{ext}\tspk\tF\ten\t1.50\thello there\n")
    (root / "manifest.tsv").write_text("".join(lines), encoding="utf-8")
    data = tmp_path / "data"
    r = run_cli("prepare", "tsv", root, "-d", data, "--split-ratios", "1,0,0", "--sample-rate", "16000")
    assert r.exit_code == 0, r.output
    cuts = CutSet.from_file(data / "mixed_cuts_train.jsonl.gz")
    r = run_cli("extract-tokens", "--type", "fbank", data / "mixed_cuts_train.jsonl.gz", "--out-dir", data / "fbank")
    assert r.exit_code == 0, r.output
    feats = {c.id: c.load_features() for c in CutSet.from_file(data / "fbank" / "mixed_cuts_train.jsonl.gz")}
    for c in cuts:
        ext, _, freq = files[c.id]
        audio = c.load_audio()[0]
        assert c.sampling_rate == 16000 and abs(len(audio) / 16000 - 1.5) < 0.1, (ext, len(audio))
        # The tone survives decoding and resampling: its frequency is the spectrum's peak.
        peak = np.argmax(np.abs(np.fft.rfft(audio))) * 16000 / len(audio)
        assert abs(peak - freq) < 5, (ext, peak)
        assert feats[c.id].shape[1] == 80 and abs(feats[c.id].shape[0] - 150) <= 10 and np.isfinite(feats[c.id]).all()


def test_speaker_disjoint_split_keeps_both_genders(tmp_path, run_cli):
    corpus = make_tsv_corpus(tmp_path / "many", n=40, speakers=10)
    data = tmp_path / "data"
    assert run_cli("prepare", "tsv", corpus, "-d", data).exit_code == 0
    speakers = {}
    for split in ("train", "dev", "test"):
        cuts = CutSet.from_file(data / f"many_cuts_{split}.jsonl.gz")
        speakers[split] = {c.supervisions[0].speaker for c in cuts}
        assert {c.supervisions[0].gender for c in cuts} == {"M", "F"}, split
    assert not speakers["train"] & speakers["test"] and not speakers["train"] & speakers["dev"]


def test_text_normalisation_modes():
    from polyspeech_cli.data.text import normalize_text

    assert normalize_text("  It's  a TEST, isn't it?  ", "asr") == "it's a test isn't it"
    assert normalize_text("ｆｕｌｌ　width", "nfkc") == "full width"
    assert normalize_text("你好，世界。", "asr") == "你好 世界"
    assert normalize_text("Keep As Is.", "none") == "Keep As Is."


def write_kaldi_dir(root: Path, with_segments: bool = False) -> Path:
    root.mkdir(parents=True)
    audio = root / "audio"
    audio.mkdir()
    wav, text, utt2spk = [], [], []
    for i in range(4):
        sf.write(audio / f"r{i}.wav", tone(2.0, 16000, 150 + 30 * i), 16000)
        wav.append(f"r{i} {audio / f'r{i}.wav'}")
        spk = f"s{i % 2}"
        if with_segments:
            for j in range(2):
                text.append(f"r{i}-{j} WORDS OF {i} {j}")
                utt2spk.append(f"r{i}-{j} {spk}")
        else:
            text.append(f"r{i} WORDS OF {i}")
            utt2spk.append(f"r{i} {spk}")
    (root / "wav.scp").write_text("\n".join(wav) + "\n")
    (root / "text").write_text("\n".join(text) + "\n")
    (root / "utt2spk").write_text("\n".join(utt2spk) + "\n")
    (root / "spk2gender").write_text("s0 f\ns1 m\n")
    if with_segments:
        segs = [f"r{i}-{j} r{i} {j * 1.0:.2f} {j * 1.0 + 0.9:.2f}" for i in range(4) for j in range(2)]
        (root / "segments").write_text("\n".join(segs) + "\n")
    return root


@pytest.mark.parametrize("with_segments", [False, True])
def test_kaldi_dir(tmp_path, run_cli, with_segments):
    kaldi = write_kaldi_dir(tmp_path / "kaldi", with_segments)
    data = tmp_path / "data"
    result = run_cli("prepare", "kaldi", kaldi, "-d", data, "--language", "de", "--split-ratios", "1,0,0", "--corpus", "k")
    assert result.exit_code == 0, result.output
    cuts = CutSet.from_file(data / "k_cuts_train.jsonl.gz")
    assert len(cuts) == (8 if with_segments else 4)
    sups = [c.supervisions[0] for c in cuts]
    assert {s.language for s in sups} == {"de"} and {s.gender for s in sups} == {"M", "F"}
    if with_segments:
        assert all(abs(c.duration - 0.9) < 1e-6 for c in cuts)
        assert cuts[0].load_audio().shape[1] == pytest.approx(0.9 * 16000, abs=2)


def test_kaldi_without_language_is_an_error(tmp_path, run_cli):
    kaldi = write_kaldi_dir(tmp_path / "kaldi")
    result = run_cli("prepare", "kaldi", kaldi, "-d", tmp_path / "data")
    assert_clean_failure(result, tmp_path / "data", "--language")


# ---- bad input: each case gives one clear error line, a non-zero exit and no manifest --------

def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_CASES = {
    "duplicate utt_id": (lambda root: None, ["u0\taudio/u0.flac\tspk0\tF\ten\t1.00\tagain"], ["duplicate utt_id 'u0'", "manifest.tsv:"]),
    "unknown language": (lambda root: None, ["x1\taudio/u1.flac\tspk0\tF\txx\t1.00\thi"], ["unknown language code 'xx'", "ISO 639-1"]),
    "zero duration": (lambda root: None, ["x1\taudio/u1.flac\tspk0\tF\ten\t0\thi"], ["duration 0.0 is not positive"]),
    "negative duration": (lambda root: None, ["x1\taudio/u1.flac\tspk0\tF\ten\t-2\thi"], ["duration -2.0 is not positive"]),
    "truncated flac": (lambda root: _truncate(root / "audio" / "u1.flac"), [], ["u1.flac", "corrupt or truncated audio"]),
    "truncated wav": (lambda root: (sf.write(root / "audio" / "t.wav", tone(2.0), 16000), _truncate(root / "audio" / "t.wav")), ["t\taudio/t.wav\tspk0\tF\ten\t2\thi"], ["t.wav", "truncated WAV"]),
    "not audio": (lambda root: (root / "audio" / "n.flac").write_text("this is not audio"), ["n\taudio/n.flac\tspk0\tF\ten\t1\thi"], ["n.flac", "not a readable audio file"]),
    "missing audio": (lambda root: None, ["m\taudio/missing.flac\tspk0\tF\ten\t1\thi"], ["missing.flac", "audio file not found"]),
    # issue 22: a row short of the header used to be read with an empty text; a long one is refused too
    "row without its text field": (lambda root: None, ["s\taudio/u1.flac\tspk0\tF\ten\t1.00"],
                                   ["manifest.tsv:6:", "6 tab-separated fields, the header has 7", "no field for: text"]),
    "row with an extra field": (lambda root: None, ["l\taudio/u1.flac\tspk0\tF\ten\t1.00\thi\tthere"],
                                ["manifest.tsv:6:", "8 tab-separated fields, the header has 7", "holds a tab"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_item_fails_cleanly_then_skip_bad_drops_it(tmp_path, run_cli, case):
    damage, rows, needles = BAD_CASES[case]
    corpus = make_tsv_corpus(tmp_path / "bad", n=4, rows=rows)
    damage(corpus)
    data = tmp_path / "data"
    assert_clean_failure(run_cli("prepare", "tsv", corpus, "-d", data), data, *needles)
    skipped = run_cli("prepare", "tsv", corpus, "-d", data, "--skip-bad", "--split-ratios", "1,0,0")
    assert skipped.exit_code == 0, skipped.output
    assert "dropped 1 bad item" in " ".join(skipped.output.split())
    assert len(CutSet.from_file(data / "bad_cuts_train.jsonl.gz")) == (4 if rows else 3)
    done = json.loads((data / ".bad.prepare.json").read_text())
    assert len(done["dropped"]) == 1


def test_unreadable_text_encoding(tmp_path, run_cli):
    corpus = make_tsv_corpus(tmp_path / "enc", n=3)
    with open(corpus / "manifest.tsv", "ab") as f:
        f.write("u9\taudio/u0.flac\tspk0\tF\tzh\t1\t你好世界\n".encode("gb18030"))
    data = tmp_path / "data"
    assert_clean_failure(run_cli("prepare", "tsv", corpus, "-d", data), data, "manifest.tsv:5", "not valid UTF-8", "iconv")
    assert run_cli("prepare", "tsv", corpus, "-d", data, "--skip-bad", "--split-ratios", "1,0,0").exit_code == 0


def test_missing_corpus_dir(tmp_path, run_cli):
    data = tmp_path / "data"
    assert_clean_failure(run_cli("prepare", "tsv", tmp_path / "nope", "-d", data), data, "corpus directory not found", "nope")
    assert_clean_failure(run_cli("prepare", "kaldi", tmp_path / "nope", "-d", data, "--language", "en"), data, "Kaldi data directory not found")
    assert_clean_failure(run_cli("prepare", "librispeech", tmp_path / "nope", "-d", data), data, "--download")


def test_empty_manifest(tmp_path, run_cli):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "manifest.tsv").write_text(HEADER)
    data = tmp_path / "data"
    assert_clean_failure(run_cli("prepare", "tsv", tmp_path / "empty", "-d", data), data, "manifest.tsv", "no usable utterances")
    (tmp_path / "nohead").mkdir()
    (tmp_path / "nohead" / "manifest.tsv").write_text("")
    assert_clean_failure(run_cli("prepare", "tsv", tmp_path / "nohead", "-d", data), data, "header lacks column")


def test_bad_options(tmp_path, run_cli):
    corpus = make_tsv_corpus(tmp_path / "c", n=3)
    data = tmp_path / "data"
    assert_clean_failure(run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "0.5,0.1"), data, "--split-ratios")
    assert_clean_failure(run_cli("prepare", "tsv", corpus, "-d", data, "--text-norm", "lower"), data, "--text-norm")


def test_failure_midway_leaves_no_partial_manifest(tmp_path, monkeypatch):
    """A crash while writing the second split leaves the first split's files whole and no temp files."""
    from polyspeech_cli.data import manifests as m

    corpus = make_tsv_corpus(tmp_path / "c", n=10, speakers=1)
    data = tmp_path / "data"
    real = m.CutSet.to_file
    calls = {"n": 0}

    def flaky(self, path):
        calls["n"] += 1
        if calls["n"] == 2:
            with gzip.open(path, "wt") as f:
                f.write('{"half": ')
            raise KeyboardInterrupt
        return real(self, path)

    monkeypatch.setattr(m.CutSet, "to_file", flaky)
    from polyspeech_cli.data.tsv import prepare_tsv
    from polyspeech_cli.prepare import PrepareOptions, run_prepare

    with pytest.raises(KeyboardInterrupt):
        run_prepare("tsv", lambda bad: prepare_tsv(corpus, bad), PrepareOptions(data, "c"), {})
    assert not list(data.glob(".tmp*")), list(data.iterdir())
    for p in data.glob("*.jsonl.gz"):
        load_manifest(p)  # every file that exists is complete
    assert not (data / ".c.prepare.json").exists()


def test_shared_sets_prepare(tmp_path, run_cli, shared_dir):
    """Every set in ../shared/data prepares (FSDD is 8 kHz, LJSpeech 22.05 kHz WAV; MP3 has its own test above)."""
    data = tmp_path / "data"
    for tsv_dir in sorted(p for p in (shared_dir / "data").iterdir() if (p / "manifest.tsv").is_file()):
        result = run_cli("prepare", "tsv", tsv_dir, "-d", data)
        assert result.exit_code == 0, (tsv_dir.name, result.output)
        cuts = CutSet.from_file(data / f"{tsv_dir.name}_cuts_train.jsonl.gz")
        assert cuts[0].sampling_rate == 16000
        assert cuts[0].supervisions[0].language in ("en", "zh")
    lj = CutSet.from_file(data / "ljspeech_cuts_train.jsonl.gz")
    assert {Path(c.recording.sources[0].source).suffix for c in lj} >= {".wav"}


def test_test_only_set(tmp_path, run_cli):
    """`--split-ratios 0,0,1` (train 0) and its shortcut `--split test`: one test split, in manifest order."""
    corpus = make_tsv_corpus(tmp_path / "evalset", n=8, speakers=8)  # 8 speakers: the speaker-disjoint rules do not apply either
    data = tmp_path / "data"
    result = run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "0,0,1")
    assert result.exit_code == 0, result.output
    assert manifests(data) == ["evalset_cuts_test.jsonl.gz", "evalset_recordings_test.jsonl.gz", "evalset_supervisions_test.jsonl.gz"]
    assert [c.id for c in CutSet.from_file(data / "evalset_cuts_test.jsonl.gz")] == [f"u{i}" for i in range(8)]  # no shuffle
    assert "split by utterance" not in result.output  # nothing was split
    # --split test means the same options: nothing to do
    again = run_cli("prepare", "tsv", corpus, "-d", data, "--split", "test")
    assert again.exit_code == 0 and "nothing to do" in again.output
    dev = run_cli("prepare", "tsv", corpus, "-d", tmp_path / "dev", "--split", "dev")
    assert dev.exit_code == 0 and manifests(tmp_path / "dev")[0] == "evalset_cuts_dev.jsonl.gz" and len(manifests(tmp_path / "dev")) == 3


def test_split_without_train(tmp_path, run_cli):
    """Train 0 with dev and test: speaker-disjoint dev/test, every utterance in one of them, no train files."""
    corpus = make_tsv_corpus(tmp_path / "many", n=24, speakers=8)
    data = tmp_path / "data"
    result = run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "0,0.5,0.5")
    assert result.exit_code == 0, result.output
    assert not list(data.glob("*_train.jsonl.gz"))
    speakers = {s: {c.supervisions[0].speaker for c in CutSet.from_file(data / f"many_cuts_{s}.jsonl.gz")} for s in ("dev", "test")}
    assert speakers["dev"] and speakers["test"] and not speakers["dev"] & speakers["test"]
    assert sum(len(CutSet.from_file(data / f"many_cuts_{s}.jsonl.gz")) for s in ("dev", "test")) == 24
    # too few speakers for a speaker-disjoint split: by utterance, still no train split
    few = make_tsv_corpus(tmp_path / "few", n=10, speakers=2)
    result = run_cli("prepare", "tsv", few, "-d", tmp_path / "d2", "--split-ratios", "0,0.3,0.7")
    assert result.exit_code == 0 and "split by utterance" in " ".join(result.output.split())
    assert [len(CutSet.from_file(tmp_path / "d2" / f"few_cuts_{s}.jsonl.gz")) for s in ("dev", "test")] == [3, 7]
    assert not list((tmp_path / "d2").glob("*_train.jsonl.gz"))


def test_kaldi_test_only(tmp_path, run_cli):
    kaldi = write_kaldi_dir(tmp_path / "kaldi")
    data = tmp_path / "data"
    result = run_cli("prepare", "kaldi", kaldi, "-d", data, "--language", "de", "--split", "test", "--corpus", "k")
    assert result.exit_code == 0, result.output
    assert manifests(data) == ["k_cuts_test.jsonl.gz", "k_recordings_test.jsonl.gz", "k_supervisions_test.jsonl.gz"]
    assert len(CutSet.from_file(data / "k_cuts_test.jsonl.gz")) == 4


def test_bad_split_options(tmp_path, run_cli):
    corpus = make_tsv_corpus(tmp_path / "c", n=3)
    data = tmp_path / "data"
    assert_clean_failure(run_cli("prepare", "tsv", corpus, "-d", data, "--split", "valid"), data, "--split 'valid'", "train, dev, test")
    assert_clean_failure(run_cli("prepare", "tsv", corpus, "-d", data, "--split", "test", "--split-ratios", "0,0,1"), data, "give one of them")
    assert_clean_failure(run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "0,0,0"), data, "--split-ratios")
    assert_clean_failure(run_cli("prepare", "tsv", corpus, "-d", data, "--split-ratios", "0.5,-0.5,1"), data, "--split-ratios")
