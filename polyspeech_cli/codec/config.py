"""The codec's config: model shape and training schedule in one dataclass (YAML in conf/)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CodecConfig:
    # model
    channels: int = 256  # width of the conv encoder/decoder
    res_blocks: int = 2  # residual blocks on each side of the down/up-sampling
    kernel_size: int = 5
    downsample: int = 2  # token frame shift = feature frame shift x downsample
    latent_dim: int = 64  # dimension the codebooks live in
    n_codebooks: int = 4
    codebook_size: int = 2048
    ema_decay: float = 0.99
    dead_code_threshold: float = 1.0  # EMA usage below this re-seeds the code from recent encoder outputs
    commitment_weight: float = 0.25
    quantizer_dropout: float = 0.5  # share of steps trained with a random number of books, so 1 book decodes well
    normalize: str = "utterance_mvn"  # per-utterance mean/variance norm before the codec ("none" to skip)
    # training (the same keys as the LM's and the speech decoder's)
    max_steps: int = 2000
    batch_size: int = 16
    segment_frames: int = 200  # random crops of this many feature frames
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 500
    keep_last: int = 2  # training checkpoints kept in ckpt/
    max_dev_cuts: int = 200
    # Training features are streamed from storage through an LRU cache of this many MiB: a set that fits
    # is read from disk once (as fast as holding it in memory), a larger one never costs more.
    cache_mb: int = 2048
    seed: int = 1234
    precision: str = "auto"  # auto (GPU: bf16/fp16; CPU: bf16 with native bf16 instructions, else fp32), fp32, bf16, fp16
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    threads: int = 0  # torch CPU threads; 0 = torch's default
