"""Real-corpus sources through Lhotse's recipes, on miniature copies of their folder layouts."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
from lhotse import CutSet

from conftest import tone


def fake_librispeech(root: Path) -> Path:
    base = root / "LibriSpeech"
    for part, spk, sex in (("dev-clean", "84", "F"), ("dev-clean", "174", "M"), ("test-clean", "61", "M")):
        chapter = base / part / spk / "1000"
        chapter.mkdir(parents=True)
        lines = []
        for i in range(2):
            uid = f"{spk}-1000-{i:04d}"
            sf.write(chapter / f"{uid}.flac", tone(1.0, 16000, 200 + i * 10), 16000)
            lines.append(f"{uid} HELLO WORLD {i}")
        (chapter / f"{spk}-1000.trans.txt").write_text("\n".join(lines) + "\n")
    (base / "SPEAKERS.TXT").write_text(
        "; ID  |SEX| SUBSET           |MINUTES| NAME\n84   | F | dev-clean        |  8.02 | Christie\n174  | M | dev-clean        |  8.04 | Peter\n61   | M | test-clean       |  8.08 | Paul\n"
    )
    return root


def fake_aishell(root: Path) -> Path:
    transcript = []
    for part, spk in (("train", "S0002"), ("dev", "S0724"), ("test", "S0764")):
        folder = root / "data_aishell" / "wav" / part / spk
        folder.mkdir(parents=True)
        for i in range(2):
            uid = f"BAC009{spk}W012{i}"
            sf.write(folder / f"{uid}.wav", tone(1.0, 16000, 300 + i * 10), 16000)
            transcript.append(f"{uid} 而 对 楼市 成交 抑制 作用 最 大 的 {i}")
    (root / "data_aishell" / "transcript").mkdir(parents=True)
    (root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt").write_text("\n".join(transcript) + "\n", encoding="utf-8")
    (root / "resource_aishell").mkdir()
    (root / "resource_aishell" / "speaker.info").write_text("0002 F\n0724 M\n0764 F\n")
    return root


def fake_commonvoice(root: Path) -> Path:
    lang = root / "zh-CN"
    (lang / "clips").mkdir(parents=True)
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"
    for part, gender in (("train", "female_feminine"), ("dev", "male_masculine"), ("test", "")):
        rows = []
        for i in range(2):
            name = f"common_voice_zh-CN_{part}{i}.flac"
            sf.write(lang / "clips" / name, tone(1.0, 48000, 250 + i * 10), 48000)
            rows.append(f"spk{part}\t{name}\t你好世界{i}\t2\t0\ttwenties\t{gender}\t\t\tzh-CN\t\n")
        (lang / f"{part}.tsv").write_text(header + "".join(rows), encoding="utf-8")
    return root


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
