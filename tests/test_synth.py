"""The generated `synth` corpus: splits, speakers, texts, audio and determinism."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from polyspeech_cli.data.espeak import EspeakSynthesizer
from polyspeech_cli.data.synth import LANGUAGE_VOICES, VOICES, SynthConfig, generate_synth, load_wordlist, split_voices
from polyspeech_cli.errors import PolyspeechError

HANZI = re.compile(r"[\u4e00-\u9fff]")
TINY = dict(train_utts_per_language=2, dev_utts_per_language=1, test_utts_per_language=1)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The same tiny config generated twice, into two directories."""
    out = []
    for name in ("a", "b"):
        corpus_dir = tmp_path_factory.mktemp(f"synth_{name}")
        out.append((corpus_dir, generate_synth(corpus_dir, SynthConfig(**TINY), show_progress=False)))
    return out


@pytest.fixture(scope="module")
def corpus(corpora):
    return corpora[0]


def _sups(manifests, split):
    return list(manifests[split][1])


def test_splits_languages_and_ids(corpus):
    _, manifests = corpus
    assert set(manifests) == {"train", "dev", "test"}
    for split, n in (("train", 2), ("dev", 1), ("test", 1)):
        recordings, supervisions = manifests[split]
        languages = [s.language for s in supervisions]
        assert len(set(languages)) >= 5 and {"en", "zh"} <= set(languages)
        assert all(languages.count(lang) == n for lang in set(languages))
        assert sorted(r.id for r in recordings) == sorted(s.id for s in supervisions)


def test_speakers_are_disjoint_and_both_genders(corpus):
    _, manifests = corpus
    speakers = {split: {s.speaker for s in _sups(manifests, split)} for split in manifests}
    assert not speakers["train"] & speakers["dev"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    for split in ("train", "dev", "test"):
        assert {s.gender for s in _sups(manifests, split)} == {"M", "F"}, split


def test_voice_inventory():
    genders = [v.gender for v in VOICES]
    assert genders.count("M") >= 6 and genders.count("F") >= 6
    assert len({v.speaker for v in VOICES}) == len(VOICES)
    train = split_voices("train")
    assert len(train) >= 6
    for split in ("dev", "test"):
        held = split_voices(split)
        assert [v.gender for v in held].count("M") >= 4 and [v.gender for v in held].count("F") >= 4  # GID on >= 8 unseen voices
        assert not {v.speaker for v in held} & {v.speaker for v in train}


def test_texts(corpus):
    _, manifests = corpus
    train_texts = {s.text for s in _sups(manifests, "train")}
    for split in ("dev", "test"):
        assert not {s.text for s in _sups(manifests, split)} & train_texts
    for sup in (s for split in manifests for s in _sups(manifests, split)):
        if sup.language == "zh":
            assert HANZI.search(sup.text) and " " not in sup.text
        else:
            assert sup.text == sup.text.lower() and "  " not in sup.text and sup.text.strip() == sup.text
            assert 3 <= len(sup.text.split()) <= 10


def test_audio(corpus):
    corpus_dir, manifests = corpus
    for split in manifests:
        for recording, sup in zip(*(sorted(m, key=lambda x: x.id) for m in manifests[split])):
            assert recording.sampling_rate == 16000
            assert Path(recording.sources[0].source) == corpus_dir / split / sup.speaker / f"{sup.id}.flac"
            assert 0.3 <= recording.duration <= 15.0 and sup.duration == recording.duration
            audio = recording.load_audio()
            assert audio.shape[0] == 1
            assert float(np.sqrt(np.mean(audio**2))) > 0.01, sup.id  # not silent
    assert not list(corpus_dir.rglob(".tmp*"))


def test_deterministic(corpora):
    (_, a), (_, b) = corpora
    for split in a:
        sups_a, sups_b = _sups(a, split), _sups(b, split)
        assert [(s.id, s.text, s.speaker, s.language) for s in sups_a] == [(s.id, s.text, s.speaker, s.language) for s in sups_b]
        for rec_a, rec_b in zip(a[split][0], b[split][0]):
            np.testing.assert_array_equal(rec_a.load_audio(), rec_b.load_audio())


def test_resume_rewrites_identical_audio(corpora):
    corpus_dir, manifests = corpora[1]
    path = Path(next(iter(manifests["test"][0])).sources[0].source)
    before = path.read_bytes()
    path.unlink()
    generate_synth(corpus_dir, SynthConfig(**TINY), show_progress=False)
    assert path.read_bytes() == before


def test_refuses_other_config_in_same_dir(corpus):
    corpus_dir, _ = corpus
    with pytest.raises(PolyspeechError, match="other settings"):
        generate_synth(corpus_dir, SynthConfig(**{**TINY, "seed": 1}), show_progress=False)


def test_bad_language(tmp_path):
    with pytest.raises(PolyspeechError, match="unsupported language"):
        generate_synth(tmp_path, SynthConfig(languages=["en", "xx"], **TINY), show_progress=False)


@pytest.mark.parametrize("language", sorted(LANGUAGE_VOICES))
def test_wordlists(language):
    words = load_wordlist(language)
    assert len(set(words)) >= 300
    assert all(w and not any(c.isdigit() or c.isspace() for c in w) for w in words)
    if language == "zh":
        assert all(HANZI.fullmatch(c) for w in words for c in w) and all(1 <= len(w) <= 3 for w in words)


def test_espeak_synthesizer():
    synth = EspeakSynthesizer()
    audio = synth.synthesize("你好世界", "cmn+f2", rate=170, pitch=50)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.3 * synth.sample_rate < audio.size < 5 * synth.sample_rate and np.abs(audio).max() <= 1.0
    for bad in ("xx", "en+nosuch"):
        with pytest.raises(PolyspeechError, match="unknown eSpeak voice"):
            synth.synthesize("hello", bad, rate=170, pitch=50)
