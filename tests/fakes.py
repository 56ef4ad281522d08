"""Miniature corpora in the real directory layouts of LibriSpeech, AISHELL-1 and Common Voice, and a
tiny randomly initialised HuBERT saved with `save_pretrained`: what the corpus and recipe tests run on."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from conftest import tone

# (part, speaker, sex): two dev-clean speakers of each gender and one test-clean speaker
LIBRISPEECH_PARTS = (("dev-clean", "84", "F"), ("dev-clean", "174", "M"), ("test-clean", "61", "M"))
CV_SENTENCES = {"zh-CN": "你好世界{i}", "en": "hello world {i}", "de": "hallo welt {i}", "fr": "bonjour le monde {i}"}


def fake_librispeech(root: Path, parts: tuple[tuple[str, str, str], ...] = LIBRISPEECH_PARTS, utts: int = 2) -> Path:
    """`root/LibriSpeech/<part>/<speaker>/1000/` with `utts` 1-s FLAC files and a transcript per speaker, and SPEAKERS.TXT."""
    base = root / "LibriSpeech"
    table = ["; ID  |SEX| SUBSET           |MINUTES| NAME"]
    for part, spk, sex in parts:
        chapter = base / part / spk / "1000"
        chapter.mkdir(parents=True)
        lines = []
        for i in range(utts):
            uid = f"{spk}-1000-{i:04d}"
            sf.write(chapter / f"{uid}.flac", tone(1.0, 16000, 200 + i * 10), 16000)
            lines.append(f"{uid} HELLO WORLD {i}")
        (chapter / f"{spk}-1000.trans.txt").write_text("\n".join(lines) + "\n")
        table.append(f"{spk:<5}| {sex} | {part:<17}|  8.02 | Reader {spk}")
    (base / "SPEAKERS.TXT").write_text("\n".join(table) + "\n")
    return root


def fake_aishell(root: Path) -> Path:
    """`root/data_aishell/wav/{train,dev,test}/<speaker>/` (two 1-s WAVs each), the transcript and speaker.info."""
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


def fake_commonvoice(root: Path, locales: tuple[str, ...] = ("zh-CN",)) -> Path:
    """`root/<locale>/{train,dev,test}.tsv` + `clips/` (two 48 kHz FLACs per split); train speakers are
    female, dev male, test without a gender (as many Common Voice rows are)."""
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"
    for locale in locales:
        lang = root / locale
        (lang / "clips").mkdir(parents=True)
        for part, gender in (("train", "female_feminine"), ("dev", "male_masculine"), ("test", "")):
            rows = []
            for i in range(2):
                name = f"common_voice_{locale}_{part}{i}.flac"
                sf.write(lang / "clips" / name, tone(1.0, 48000, 250 + i * 10), 48000)
                sentence = CV_SENTENCES.get(locale, "sentence {i}").format(i=i)
                rows.append(f"spk{part}\t{name}\t{sentence}\t2\t0\ttwenties\t{gender}\t\t\t{locale}\t\n")
            (lang / f"{part}.tsv").write_text(header + "".join(rows), encoding="utf-8")
    return root


def tiny_hubert(path: Path, **config) -> Path:
    """A 2-layer, 32-dim HubertModel (random weights, seed 0) saved with save_pretrained at `path`;
    `config` overrides HubertConfig keys (e.g. feat_extract_norm="layer")."""
    import torch
    from transformers import HubertConfig, HubertModel

    cfg = HubertConfig(**{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                          "conv_dim": (16,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, **config})
    torch.manual_seed(0)
    HubertModel(cfg).save_pretrained(path)
    return path
