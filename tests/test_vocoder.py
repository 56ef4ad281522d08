"""The speech decoder (`polyspeech train vocoder`): training, speaker control, duration, resume,
Griffin-Lim, HiFi-GAN plumbing, and the user errors of synthesis.

The corpus is two synthetic "speakers" (harmonic sources with a different pitch range and a
different spectral tilt, i.e. timbre) saying random "syllables", so every test runs in seconds.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from safetensors.torch import load_file

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import nest

SR = 16000
NOISE = 0.003  # a little noise floor, so the log-mel has no -inf holes
SPEAKERS = {"spk-low": (110.0, 0.55), "spk-high": (230.0, 0.85)}  # f0 (Hz), harmonic decay (timbre)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def voice(f0: float, decay: float, seconds: float, seed: int) -> np.ndarray:
    """Random 'syllables': a harmonic source whose pitch wanders and whose loudness comes in bursts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    n_syl = max(2, int(seconds * 4))
    contour = np.interp(t, np.linspace(0, seconds, n_syl), f0 * (1 + 0.15 * rng.standard_normal(n_syl)))
    phase = 2 * np.pi * np.cumsum(contour) / SR
    src = sum(decay**k * np.sin(k * phase) for k in range(1, 16))
    env = np.interp(t, np.linspace(0, seconds, 2 * n_syl), np.abs(rng.standard_normal(2 * n_syl)) * (np.arange(2 * n_syl) % 2))
    return (0.2 * src * env / max(1e-9, np.abs(src * env).max()) + NOISE * rng.standard_normal(n)).astype(np.float32)


def make_cuts(root: Path, per_speaker: int = 3, seconds: float = 1.6, name: str = "train", bins: int = 80) -> Path:
    """A cuts manifest with audio and 80-dim Kaldi fbank features (what `extract-tokens --type fbank` writes)."""
    from lhotse import CutSet, Fbank, FbankConfig, NumpyFilesWriter, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recs, sups = [], []
    for s, (spk, (f0, decay)) in enumerate(SPEAKERS.items()):
        for i in range(per_speaker):
            uid = f"{name}-{spk}-{i}"
            path = root / "audio" / f"{uid}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, voice(f0, decay, seconds + 0.2 * i, seed=100 * s + i + (0 if name == "train" else 50)), SR)
            recs.append(Recording.from_file(path, recording_id=uid))
            sups.append(SupervisionSegment(id=uid, recording_id=uid, start=0.0, duration=recs[-1].duration, speaker=spk,
                                           language="en", text="x"))
    cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs), supervisions=SupervisionSet.from_segments(sups))
    cuts = cuts.compute_and_store_features(Fbank(FbankConfig(num_mel_bins=bins)), storage_path=root / f"feats_{name}",
                                           storage_type=NumpyFilesWriter, num_jobs=1)
    out = root / f"cuts_{name}.jsonl.gz"
    cuts.to_file(out)
    return out


def tiny_config(**overrides):
    from polyspeech_cli.vocoder.model import DecoderConfig
    from polyspeech_cli.vocoder.speaker import SpeakerConfig
    from polyspeech_cli.vocoder.config import VocoderConfig

    cfg = VocoderConfig(
        decoder=DecoderConfig(channels=48, blocks=2, dilations=[1, 2], speaker=SpeakerConfig(channels=32, conv_layers=2, gru_dim=32, embed_dim=32)),
        batch_size=4, segment_frames=80, prompt_frames=120, lr=3e-3, warmup_steps=10, max_steps=150,
        log_every=10, valid_every=0, checkpoint_every=0, device="cpu",
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny decoder trained on 2 speakers x 3 utterances (shared by most tests)."""
    from polyspeech_cli.vocoder.train import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("voc")
    train_cuts, dev_cuts = make_cuts(root), make_cuts(root, per_speaker=2, name="dev")
    exp = root / "exp"
    metrics = train(tiny_config(), train_cuts, dev_cuts, exp, log=lambda *a, **k: None, progress=False)
    return {"root": root, "exp": exp, "train_cuts": train_cuts, "dev_cuts": dev_cuts, "metrics": metrics}


def _train_losses(exp: Path) -> list[float]:
    with open(exp / "train_log.csv", encoding="utf-8") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r["split"] == "train"]


def test_overfits_few_utterances(trained):
    losses = _train_losses(trained["exp"])  # step 1, then every 10 steps
    assert np.mean(losses[-3:]) < losses[0] / 4, losses
    for name in ("model.safetensors", "config.yaml", "dev_mel.png", "train_log.csv"):
        assert (trained["exp"] / name).is_file(), name
    m = trained["metrics"]
    assert m["mel_l1"] < 1.5 and np.isfinite(m["mel_mse"])


def test_prompt_controls_speaker_embedding_and_mel(trained):
    from polyspeech_cli.vocoder.synthesize import load_vocoder

    voc = load_vocoder(trained["exp"])
    low = [voc.speaker_embedding(voice(110, 0.55, 2.0, seed=s), SR) for s in (7, 8)]
    high = voc.speaker_embedding(voice(230, 0.85, 2.0, seed=9), SR)
    same = float((low[0] * low[1]).sum())
    diff = float((low[0] * high).sum())
    assert diff < same, (same, diff)
    feats = np.random.default_rng(0).standard_normal((120, 80)).astype(np.float32)
    mel_low, mel_high = voc.features_to_mel(feats, low[0]), voc.features_to_mel(feats, high)
    assert mel_low.shape == mel_high.shape == (120, 80)
    assert float((mel_low - mel_high).abs().mean()) > 0.05


def test_duration_follows_input_frames(trained):
    from polyspeech_cli.vocoder.model import mel_frames_for
    from polyspeech_cli.vocoder.mel import MelConfig
    from polyspeech_cli.vocoder.synthesize import features_to_wave

    prompt = voice(110, 0.55, 1.5, seed=3)
    for t in (37, 150):
        wave = features_to_wave(np.random.default_rng(t).standard_normal((t, 80)), prompt, SR, trained["exp"])
        assert wave.dtype == np.float32 and wave.shape == (t * 160,) and np.isfinite(wave).all()
    # 20 ms features (HuBERT) map to twice as many 10 ms mel frames
    assert mel_frames_for(50, 0.02, MelConfig()) == 100
    assert features_to_wave(np.zeros((50, 80)), prompt, SR, trained["exp"], frame_shift=0.02).shape == (100 * 160,)
    # a prompt at another sample rate is resampled, not rejected
    prompt_8k = voice(110, 0.55, 1.5, seed=3)[::2]
    assert features_to_wave(np.zeros((20, 80)), prompt_8k, 8000, trained["exp"]).shape == (20 * 160,)
    # A shared prompt's speaker embedding is computed once per name (decode's batches share prompts).
    from polyspeech_cli.vocoder.synthesize import load_vocoder

    speakers: dict = {}
    for t in (20, 30):
        assert features_to_wave(np.zeros((t, 80)), prompt, SR, trained["exp"], "spk A", speakers=speakers).shape == (t * 160,)
    assert list(speakers) == ["spk A"]
    torch.testing.assert_close(speakers["spk A"], load_vocoder(trained["exp"]).speaker_embedding(prompt, SR))


def test_resume_equals_uninterrupted(tmp_path, trained, run_cli):
    import yaml

    conf = tmp_path / "voc.yaml"
    conf.write_text(yaml.safe_dump({
        "decoder": {"channels": 16, "blocks": 1, "speaker": {"channels": 8, "conv_layers": 1, "gru_dim": 8, "embed_dim": 8}},
        "batch_size": 2, "segment_frames": 40, "prompt_frames": 60, "warmup_steps": 2, "lr_half_life": 3,
        "log_every": 1, "valid_every": 0, "checkpoint_every": 3, "device": "cpu",
    }))
    args = ("train", "vocoder", "--config", conf, "--train-cuts", trained["train_cuts"], "--no-progress", "--threads", "1")
    r = run_cli(*args, "--exp-dir", tmp_path / "a", "--max-steps", 6)
    assert r.exit_code == 0, r.output
    r = run_cli(*args, "--exp-dir", tmp_path / "b", "--max-steps", 3)
    assert r.exit_code == 0, r.output
    r = run_cli(*args, "--exp-dir", tmp_path / "b", "--max-steps", 6)
    assert r.exit_code == 1 and "--resume" in r.output  # refuses to overwrite
    r = run_cli(*args, "--exp-dir", tmp_path / "b", "--max-steps", 6, "--resume")
    assert r.exit_code == 0, r.output
    a = nest(load_file(tmp_path / "a" / "model.safetensors"), "decoder")
    b = nest(load_file(tmp_path / "b" / "model.safetensors"), "decoder")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _train_losses(tmp_path / "a") == _train_losses(tmp_path / "b")
    r = run_cli(*args, "--exp-dir", tmp_path / "b", "--max-steps", 6, "--resume")
    assert r.exit_code == 0 and "nothing to do" in " ".join(r.output.split()), r.output
    r = run_cli(*args, "--exp-dir", tmp_path / "c", "--max-steps", 6, "--stop-at", 3)
    assert r.exit_code == 0 and "--stop-at" in r.output, r.output
    r = run_cli(*args, "--exp-dir", tmp_path / "c", "--max-steps", 6, "--resume")
    assert r.exit_code == 0, r.output
    c = nest(load_file(tmp_path / "c" / "model.safetensors"), "decoder")
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_griffin_lim_round_trip(trained):
    from polyspeech_cli.vocoder.mel import MelConfig, mel_to_wave_griffin_lim, wave_to_mel

    cfg = MelConfig()
    audio = voice(150, 0.7, 1.3, seed=11)
    mel = wave_to_mel(audio, cfg)
    assert mel.shape == (1 + len(audio) // cfg.hop_length, cfg.n_mels)
    wave = mel_to_wave_griffin_lim(mel, cfg)
    assert wave.shape == (mel.shape[0] * cfg.hop_length,) and abs(len(wave) - len(audio)) <= cfg.hop_length
    back = wave_to_mel(wave[: len(audio)], cfg)
    loud = mel > mel.max() - 6  # compare where there is energy (phase errors matter little there)
    assert float(np.abs(back - mel)[loud].mean()) < 0.6


@pytest.mark.parametrize("kind", ["silent", "short", "not_audio", "missing"])
def test_bad_prompt_files(trained, tmp_path, kind):
    from polyspeech_cli.vocoder.synthesize import features_to_wave_file

    path = tmp_path / f"{kind}.wav"
    if kind == "silent":
        sf.write(path, np.zeros(2 * SR, dtype=np.float32), SR)
    elif kind == "short":
        sf.write(path, voice(110, 0.55, 0.5, seed=1), SR)
    elif kind == "not_audio":
        path.write_text("this is not audio\n")
    expected = {"silent": "silent", "short": "at least 1 s", "not_audio": "not a readable audio file", "missing": "not found"}[kind]
    with pytest.raises(PolyspeechError, match=expected) as e:
        features_to_wave_file(np.zeros((20, 80), np.float32), path, trained["exp"], tmp_path / "out.wav")
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out.wav").exists()


def test_feature_dim_mismatch_is_a_clear_error(trained):
    from polyspeech_cli.vocoder.synthesize import features_to_wave

    with pytest.raises(PolyspeechError, match=r"80-dim .* got 768-dim") as e:
        features_to_wave(np.zeros((30, 768), np.float32), voice(110, 0.55, 1.5, seed=2), SR, trained["exp"])
    assert "model.safetensors" in str(e.value)
    with pytest.raises(PolyspeechError, match="vocoder model not found"):
        features_to_wave(np.zeros((30, 80), np.float32), voice(110, 0.55, 1.5, seed=2), SR, trained["root"] / "nowhere")


def test_hifigan_option_trains_and_synthesizes(trained, tmp_path):
    from polyspeech_cli.vocoder.hifigan import HifiganConfig
    from polyspeech_cli.vocoder.synthesize import features_to_wave, load_vocoder
    from polyspeech_cli.vocoder.train import train

    hifi = HifiganConfig(upsample_initial_channel=16, resblock_kernel_sizes=[3], resblock_dilations=[[1, 3]], periods=[2, 3],
                         disc_channels=2, steps=2, batch_size=2, segment_frames=8)
    cfg = tiny_config(max_steps=2, vocoder="hifigan", hifigan=hifi)
    train(cfg, trained["train_cuts"], None, tmp_path / "exp", log=lambda *a, **k: None, progress=False)
    voc = load_vocoder(tmp_path / "exp")
    assert voc.generator is not None
    wave = features_to_wave(np.zeros((25, 80), np.float32), voice(110, 0.55, 1.5, seed=2), SR, tmp_path / "exp")
    assert wave.shape == (25 * 160,) and np.isfinite(wave).all()
    with open(tmp_path / "exp" / "train_log.csv", encoding="utf-8") as f:
        assert any(r["phase"] == "hifigan" for r in csv.DictReader(f))


def test_bad_config_values(tmp_path, trained):
    from polyspeech_cli.vocoder.train import train

    with pytest.raises(PolyspeechError, match="vocoder must be one of"):
        train(tiny_config(vocoder="wavenet"), trained["train_cuts"], None, tmp_path / "x", log=lambda *a, **k: None, progress=False)
    with pytest.raises(PolyspeechError, match="multiply to"):
        from polyspeech_cli.vocoder.hifigan import HifiganConfig

        train(tiny_config(vocoder="hifigan", hifigan=HifiganConfig(upsample_rates=[4, 4], steps=1)), trained["train_cuts"], None,
              tmp_path / "x", log=lambda *a, **k: None, progress=False)


def test_evaluate_exp_end_to_end(trained, tmp_path):
    from polyspeech_cli.vocoder.evaluate import evaluate_exp

    m = evaluate_exp(trained["exp"], trained["dev_cuts"], tmp_path / "wav", resynth_cuts=2)
    assert m["mel_l1"] < m["mel_l1_mean_baseline"]
    assert m["spk_cos_same"] > m["spk_cos_diff"]
    assert np.isfinite(m["e2e_mel_l1"]) and np.isfinite(m["copy_mel_l1"])
    assert len(list((tmp_path / "wav").glob("*.wav"))) == 4


def test_feature_warp_and_speaker_loss():
    from polyspeech_cli.augment import warp_feature_axis
    from polyspeech_cli.vocoder.train import speaker_contrastive

    x = torch.randn(5, 80)
    assert torch.allclose(warp_feature_axis(x, 1.0), x)
    ramp = torch.arange(80, dtype=torch.float32).repeat(2, 1)
    assert torch.allclose(warp_feature_axis(ramp, 1.25)[0, :60], torch.arange(60) / 1.25)  # formants move up
    e = torch.nn.functional.normalize(torch.eye(3, 8), dim=-1)
    spk = torch.tensor([0, 1, 2])
    assert speaker_contrastive(e, e, spk, 0.1) < speaker_contrastive(e, e.roll(1, 0), spk, 0.1)


def test_resume_with_other_features_or_shape_is_a_clear_error(trained, tmp_path):
    import shutil

    from polyspeech_cli.vocoder.model import DecoderConfig
    from polyspeech_cli.vocoder.train import train

    exp = tmp_path / "exp"
    shutil.copytree(trained["exp"], exp)
    cuts40 = make_cuts(tmp_path, per_speaker=2, name="f40", bins=40)
    quiet = {"log": lambda *a, **k: None, "progress": False}
    with pytest.raises(PolyspeechError, match="train cuts: .*cuts_f40.*use a new --exp-dir or delete"):
        train(tiny_config(max_steps=200), cuts40, None, exp, resume=True, **quiet)
    with pytest.raises(PolyspeechError, match=r"decoder.channels: 48 -> 16.*use a new --exp-dir or delete"):
        train(tiny_config(max_steps=200, decoder=DecoderConfig(channels=16)), trained["train_cuts"], None, exp, resume=True, **quiet)
    (exp / "run.json").unlink()  # an exp dir without the run record: the checkpoint's own checks still hold
    with pytest.raises(PolyspeechError, match="80-dim features but .* has 40-dim"):
        train(tiny_config(max_steps=200), cuts40, None, exp, resume=True, **quiet)


def test_hifigan_resume_equals_uninterrupted(trained, tmp_path):
    from polyspeech_cli.vocoder.hifigan import HifiganConfig
    from polyspeech_cli.vocoder.train import train

    def cfg(gan_steps: int):
        hifi = HifiganConfig(upsample_initial_channel=16, resblock_kernel_sizes=[3], resblock_dilations=[[1]], periods=[2],
                             disc_channels=2, steps=gan_steps, batch_size=2, segment_frames=4)
        return tiny_config(max_steps=1, vocoder="hifigan", hifigan=hifi)

    quiet = {"log": lambda *a, **k: None, "progress": False}
    train(cfg(4), trained["train_cuts"], None, tmp_path / "a", **quiet)
    train(cfg(2), trained["train_cuts"], None, tmp_path / "b", **quiet)
    train(cfg(4), trained["train_cuts"], None, tmp_path / "b", resume=True, **quiet)
    a = nest(load_file(tmp_path / "a" / "model.safetensors"), "generator")
    b = nest(load_file(tmp_path / "b" / "model.safetensors"), "generator")
    assert a and all(torch.equal(a[k], b[k]) for k in a)


def test_padding_does_not_change_outputs():
    """Batched training (padded) and one-at-a-time synthesis must compute the same function."""
    from polyspeech_cli.vocoder.model import DecoderConfig, SpeechDecoder
    from polyspeech_cli.vocoder.speaker import SpeakerConfig

    torch.manual_seed(0)
    model = SpeechDecoder(24, 80, DecoderConfig(channels=16, blocks=2, speaker=SpeakerConfig(channels=8, conv_layers=2, gru_dim=8, embed_dim=8))).eval()
    short, long = torch.randn(1, 30, 80), torch.randn(1, 45, 80)
    feats = torch.randn(1, 30, 24)
    x, p = torch.zeros(2, 45, 24), torch.zeros(2, 45, 80)
    x[0, :30], p[0, :30], p[1] = feats[0], short[0], long[0]
    mask = torch.zeros(2, 45, dtype=torch.bool)
    mask[0, :30] = True
    mask[1] = True
    with torch.no_grad():
        spk = model.speaker(p, mask)
        assert torch.allclose(spk[0], model.speaker(short)[0], atol=1e-5) and torch.allclose(spk[1], model.speaker(long)[0], atol=1e-5)
        y = model(x, spk, mask)
        assert torch.allclose(y[0, :30], model(feats, spk[:1])[0], atol=1e-5)
