"""The character n-gram of decoding's shallow fusion (`lm/ngram.py`, `polyspeech train ngram`)."""

from __future__ import annotations

import math

import pytest

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.lm.ngram import EOS, CharNgram

TEXTS = ["the cat sat", "the dog sat", "a cat ran", "das haus", "学习电脑"]


@pytest.mark.parametrize("history", ["", "the c", "zzz", "学", "a cat ran the dog"])
def test_distributions_sum_to_one_and_agree_with_the_per_character_score(history):
    m = CharNgram(TEXTS, 4)
    dist = m.next_logp(history)
    assert sum(math.exp(x) for x in dist) == pytest.approx(1.0, abs=1e-9)
    for c in m.alphabet:
        assert dist[m.index[c]] == pytest.approx(m.logp(history, c), abs=1e-12)
    assert m.logp_end(history) == pytest.approx(dist[m.index[EOS]], abs=1e-12)


def test_witten_bell_by_hand():
    # "ab" at order 2. Unigrams: a, b and </s> once each (3 types of 3 tokens; 3 symbols + 1 unseen slot,
    # so the uniform floor is 1/4): P(b) = (1 + 3/4) / (3 + 3), P(never seen) = (0 + 3/4) / 6.
    # After "a" only "b" was seen, after the sentence start only "a" (1 type of 1 token each).
    m = CharNgram(["ab"], 2)
    p_b, p_unseen = (1 + 3 / 4) / 6, (3 / 4) / 6
    assert math.exp(m.logp("a", "b")) == pytest.approx((1 + p_b) / 2)
    assert math.exp(m.logp("", "b")) == pytest.approx(p_b / 2)
    assert math.exp(m.logp("a", "z")) == pytest.approx(p_unseen / 2)
    with pytest.raises(ValueError):
        CharNgram([], 2)


def test_the_longer_history_decides():
    m = CharNgram(TEXTS, 4)
    assert m.logp("the c", "a") > m.logp("the c", "o")  # "the cat" was seen, "the co" was not
    assert m.logp("the d", "o") > m.logp("the d", "a")
    assert m.logp("", "the cat sat") > m.logp("", "the cot sat")
    assert m.logp_end("the cat sat") > m.logp_end("the ca")
    assert CharNgram(TEXTS, 1).logp("the c", "a") == CharNgram(TEXTS, 1).logp("xyz", "a")  # order 1: no history


def test_save_load_round_trip_and_bad_files(tmp_path):
    m = CharNgram(TEXTS, 5)
    m.save(tmp_path / "ngram.json")
    back = CharNgram.load(tmp_path / "ngram.json")
    assert back.order == 5 and back.logp("the ", "cat") == m.logp("the ", "cat")
    (tmp_path / "other.json").write_text('{"kind": "something else"}')
    with pytest.raises(PolyspeechError, match="other.json"):
        CharNgram.load(tmp_path / "other.json")
    with pytest.raises(PolyspeechError, match="train ngram"):
        CharNgram.load(tmp_path / "missing.json")
    with pytest.raises(ValueError):
        CharNgram(TEXTS, 0)


def test_train_ngram_cli_skips_finished_work_and_refuses_cuts_without_text(run_cli, tmp_path):
    from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

    def cuts(texts, name):
        rec = Recording(id="r", sources=[], sampling_rate=16000, num_samples=16000, duration=1.0)
        cs = CutSet.from_cuts(MonoCut(id=f"c{i}", start=0, duration=1.0, channel=0, recording=rec,
                                      supervisions=[SupervisionSegment(id=f"s{i}", recording_id="r", start=0, duration=1.0, text=t)])
                              for i, t in enumerate(texts))
        path = tmp_path / name
        cs.to_file(path)
        return path

    out = tmp_path / "ngram" / "ngram.json"
    train = cuts(TEXTS, "train.jsonl.gz")
    r = run_cli("train", "ngram", "--train-cuts", train, "--out", out, "--order", "3")
    assert r.exit_code == 0 and out.is_file(), r.output
    assert CharNgram.load(out).texts == TEXTS
    mtime = out.stat().st_mtime_ns
    r = run_cli("train", "ngram", "--train-cuts", train, "--out", out, "--order", "3")
    assert r.exit_code == 0 and "nothing to do" in r.output and out.stat().st_mtime_ns == mtime
    r = run_cli("train", "ngram", "--train-cuts", cuts(["", ""], "empty.jsonl.gz"), "--out", tmp_path / "bad.json")
    assert r.exit_code == 1 and "no cut has a transcript" in r.output and not (tmp_path / "bad.json").exists()
