"""Real-corpus sources through Lhotse's recipes, on miniature copies of their folder layouts."""

from __future__ import annotations

from lhotse import CutSet

from fakes import fake_aishell, fake_commonvoice, fake_librispeech


def test_commonvoice_recipe_maps_locale_and_gender(tmp_path, run_cli):
    corpus = fake_commonvoice(tmp_path / "cv")
    data = tmp_path / "data"
    result = run_cli("prepare", "commonvoice", corpus, "-d", data)
    assert result.exit_code == 0, result.output
    train = CutSet.from_file(data / "commonvoice_cuts_zh-CN_train.jsonl.gz")
    sup = train[0].supervisions[0]
    assert sup.language == "zh" and sup.gender == "F" and train[0].sampling_rate == 16000
    assert CutSet.from_file(data / "commonvoice_cuts_zh-CN_dev.jsonl.gz")[0].supervisions[0].gender == "M"
    assert CutSet.from_file(data / "commonvoice_cuts_zh-CN_test.jsonl.gz")[0].supervisions[0].gender is None


def test_librispeech_recipe_adds_language_and_gender(tmp_path, run_cli):
    corpus = fake_librispeech(tmp_path / "ls")
    data = tmp_path / "data"
    result = run_cli("prepare", "librispeech", corpus, "-d", data)
    assert result.exit_code == 0, result.output
    dev = CutSet.from_file(data / "librispeech_cuts_dev-clean.jsonl.gz")
    test = CutSet.from_file(data / "librispeech_cuts_test-clean.jsonl.gz")
    assert len(dev) == 4 and len(test) == 2
    genders = {c.supervisions[0].speaker: c.supervisions[0].gender for c in dev}
    assert genders == {"84": "F", "174": "M"}
    assert {c.supervisions[0].language for c in dev} == {"en"}
    assert dev[0].supervisions[0].text.startswith("hello world")


def test_aishell_recipe_adds_language_and_gender(tmp_path, run_cli):
    corpus = fake_aishell(tmp_path / "aishell")
    data = tmp_path / "data"
    result = run_cli("prepare", "aishell", corpus, "-d", data)
    assert result.exit_code == 0, result.output
    train = CutSet.from_file(data / "aishell_cuts_train.jsonl.gz")
    sup = train[0].supervisions[0]
    assert sup.language == "zh" and sup.gender == "F" and sup.text.startswith("而对楼市")
    assert CutSet.from_file(data / "aishell_cuts_dev.jsonl.gz")[0].supervisions[0].gender == "M"


def test_wrong_layout_is_a_clear_error(tmp_path, run_cli):
    (tmp_path / "empty").mkdir()
    result = run_cli("prepare", "aishell", tmp_path / "empty", "-d", tmp_path / "data")
    assert result.exit_code != 0
    assert "does not look like aishell" in " ".join(result.output.split())
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
