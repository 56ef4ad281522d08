"""Synthesis: semantic features (e.g. the SSET codec's decoded output) + a prompt → waveform.

    wave = features_to_wave(features, prompt_wave, prompt_sr, "exp/vocoder")

Everything (mel settings, decoder, speaker encoder, input feature dim/frame shift, the vocoder
choice) comes from `exp_dir/model.safetensors`; models are cached per exp dir, so calling this once per
utterance costs one load.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from polyspeech_cli.audio import read_audio, resample
from polyspeech_cli.codec.data import normalize
from polyspeech_cli.config import from_dict
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.vocoder.checkpoint import MODEL, read_model
from polyspeech_cli.vocoder.config import VocoderConfig
from polyspeech_cli.vocoder.hifigan import Generator
from polyspeech_cli.vocoder.mel import GriffinLim, MelFrontend
from polyspeech_cli.augment import resample_time
from polyspeech_cli.vocoder.model import SpeechDecoder, mel_frames_for

MIN_PROMPT_S = 1.0
SILENCE_RMS = 1e-4  # about -80 dBFS: digital silence or a dead microphone


class LoadedVocoder:
    """A trained decoder (+ speaker encoder) and its vocoder, in eval mode on CPU."""

    def __init__(self, exp_dir: Path):
        self.path = Path(exp_dir) / MODEL
        decoder_state, generator_state, state = read_model(exp_dir)
        self.cfg = from_dict(VocoderConfig, state["config"], where=f"{self.path}: config")
        self.feat_dim, self.frame_shift = int(state["feat_dim"]), float(state["frame_shift"])
        self.feature_type = str(state.get("feature_type", "?"))
        self.decoder = SpeechDecoder(self.feat_dim, self.cfg.mel.n_mels, self.cfg.decoder)
        try:
            self.decoder.load_state_dict(decoder_state)
        except RuntimeError as e:
            raise PolyspeechError(f"{self.path}: its weights do not fit the decoder its config builds (written by another "
                                  "version of polyspeech?); retrain with `polyspeech train vocoder`") from e
        self.decoder.eval()
        self.frontend = MelFrontend(self.cfg.mel)
        self.generator = None
        if self.cfg.vocoder == "hifigan" and generator_state is not None:
            self.generator = Generator(self.cfg.mel.n_mels, self.cfg.hifigan)
            self.generator.load_state_dict(generator_state)
            self.generator.eval()
        elif self.cfg.vocoder == "hifigan_pretrained":
            from polyspeech_cli.vocoder.pretrained import check_mel, load_generator

            self.generator, spec = load_generator(self.cfg.hifigan_pretrained.source)  # or a one-line error naming the fix
            check_mel(self.cfg.mel, spec, str(self.path))
        self.griffin_lim = GriffinLim(self.cfg.mel)

    @torch.no_grad()
    def speaker_embedding(self, prompt_wave: np.ndarray, prompt_sr: int, name: str = "prompt") -> torch.Tensor:
        """(1, E) embedding of a validated prompt waveform."""
        wave = check_prompt(prompt_wave, prompt_sr, name)
        sr = self.cfg.mel.sample_rate
        x = torch.from_numpy(resample(wave, prompt_sr, sr))
        return self.decoder.speaker(self.frontend(x)[None])

    @torch.no_grad()
    def features_to_mel(self, features: np.ndarray, spk: torch.Tensor, frame_shift: float | None = None) -> torch.Tensor:
        """(T, D) features → (T_mel, n_mels) log-mel; `frame_shift` (s) defaults to the training features'."""
        x = check_features(features, self.feat_dim, self.feature_type, self.path)
        t_out = mel_frames_for(x.shape[0], frame_shift or self.frame_shift, self.cfg.mel)
        x = resample_time(torch.from_numpy(normalize(x, self.cfg.normalize)), t_out)
        return self.decoder.denormalize(self.decoder(x[None], spk))[0]

    @torch.no_grad()
    def mel_to_wave(self, mel: torch.Tensor) -> np.ndarray:
        wave = self.generator(mel[None])[0] if self.generator is not None else self.griffin_lim(mel)
        wave = wave.numpy().astype(np.float32)
        peak = float(np.abs(wave).max()) if wave.size else 0.0
        return wave / peak * 0.99 if peak > 0.99 else wave


@functools.lru_cache(maxsize=4)
def _load(exp_dir: str, mtime: float) -> LoadedVocoder:
    return LoadedVocoder(Path(exp_dir))


def load_vocoder(exp_dir: Path | str) -> LoadedVocoder:
    """The exp dir's model, cached (reloaded when model.safetensors changes)."""
    path = Path(exp_dir) / MODEL
    return _load(str(Path(exp_dir).resolve()), path.stat().st_mtime if path.is_file() else 0.0)


def check_prompt(wave: np.ndarray, sr: int, name: str = "prompt") -> np.ndarray:
    """A mono float32 prompt of at least 1 s that is not silent, else a PolyspeechError naming it."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:  # (samples, channels) as soundfile reads it, or (1, samples)
        wave = wave.mean(axis=1) if wave.shape[0] > wave.shape[1] else wave.mean(axis=0)
    if wave.ndim != 1 or sr <= 0:
        raise PolyspeechError(f"{name}: not a mono waveform (shape {wave.shape}, {sr} Hz); pass a speech recording")
    if wave.size < MIN_PROMPT_S * sr:
        raise PolyspeechError(f"{name}: the speaker prompt is {wave.size / sr:.2f} s long, at least {MIN_PROMPT_S:.0f} s "
                              "is needed (use a longer utterance of the target speaker)")
    if not np.isfinite(wave).all():
        raise PolyspeechError(f"{name}: the speaker prompt contains NaN/inf samples (re-export the audio)")
    if float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise PolyspeechError(f"{name}: the speaker prompt is silent (RMS below {SILENCE_RMS:g}); pass a recording with speech")
    return wave


def load_prompt(path: Path | str) -> tuple[np.ndarray, int]:
    """Read and validate a prompt audio file → (mono float32 waveform, sample rate)."""
    path = Path(path)
    wave, sr = read_audio(path, "speaker prompt", "pass an existing WAV, FLAC or MP3 speech recording")
    return check_prompt(wave, sr, str(path)), sr


def check_features(features: np.ndarray, feat_dim: int, feature_type: str, model_path: Path) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise PolyspeechError(f"features have shape {x.shape}, expected (frames, {feat_dim}) with frames > 0")
    if x.shape[1] != feat_dim:
        raise PolyspeechError(f"{model_path} was trained on {feat_dim}-dim '{feature_type}' features, got {x.shape[1]}-dim ones: "
                              "use the vocoder trained on the same feature type as the codec")
    if not np.isfinite(x).all():
        raise PolyspeechError("features contain NaN/inf values (check the codec output)")
    return x


def features_to_wave(features: np.ndarray, prompt_wave: np.ndarray, prompt_sr: int, exp_dir: Path | str,
                     prompt_name: str = "prompt", frame_shift: float | None = None,
                     speakers: dict[str, torch.Tensor] | None = None) -> np.ndarray:
    """(T, D) semantic features + a prompt waveform → float32 waveform at the vocoder's sample rate,
    T * frame_shift seconds long (to one hop). `frame_shift` defaults to that of the features the
    vocoder was trained on (what the SSET codec trained on the same features outputs).
    `speakers`: a cache of speaker embeddings by `prompt_name` (a batch of utterances often shares a
    prompt: the embedding is then computed once)."""
    voc = load_vocoder(exp_dir)
    spk = speakers.get(prompt_name) if speakers is not None else None
    if spk is None:
        spk = voc.speaker_embedding(prompt_wave, prompt_sr, prompt_name)
        if speakers is not None:
            speakers[prompt_name] = spk
    return voc.mel_to_wave(voc.features_to_mel(features, spk, frame_shift))


def features_to_wave_file(features: np.ndarray, prompt_path: Path | str, exp_dir: Path | str, out_path: Path | str) -> Path:
    """Like features_to_wave with the prompt read from a file; writes `out_path` (WAV/FLAC) atomically."""
    from polyspeech_cli.fileio import atomic_path

    wave, sr = load_prompt(prompt_path)
    out = features_to_wave(features, wave, sr, exp_dir, prompt_name=str(prompt_path))
    with atomic_path(Path(out_path)) as tmp:
        sf.write(str(tmp), out, load_vocoder(exp_dir).cfg.mel.sample_rate)
    return Path(out_path)
