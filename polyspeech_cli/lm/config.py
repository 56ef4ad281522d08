"""The LM's configuration: every key of `conf/lm_*.yaml`, in one typed dataclass.

Kept apart from the trainer so that loading a model for decoding never imports training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polyspeech_cli.lm.data import DataConfig, SpecAugmentConfig, VoicePerturbConfig
from polyspeech_cli.lm.model import ModelConfig
from polyspeech_cli.lm.vocab import VocabConfig


@dataclass
class TrainConfig:
    """All keys of `conf/lm_*.yaml`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tasks: list[str] = field(default_factory=lambda: ["asr", "lid", "gid"])
    task_weights: dict[str, float] = field(default_factory=dict)  # multipliers on each task's hours (default 1)
    task_temperature: float = 1.0  # >1 flattens the task mix towards uniform
    max_duration: float = 80.0  # seconds of speech per batch
    num_buckets: int = 10
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_steps: int = 1000
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (GPU: bf16/fp16; CPU: bf16 with native bf16 instructions, else fp32), fp32, bf16, fp16
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    log_every: int = 10
    valid_every: int = 200
    valid_batches: int = 10
    eval_every: int = 0  # greedy CER / accuracy on dev cuts; 0 = only at the end
    eval_utts: int = 50
    # Early stopping (single-task runs): stop after this many dev evaluations without a new best
    # dev error (ASR: the lower of greedy and CTC CER; LID/GID: 1 - accuracy, every `eval_every`
    # steps; TTS: dev loss, every `valid_every` steps) and keep the best model; `max_steps` is the cap.
    # 0 = train for max_steps.
    patience: int = 0
    checkpoint_every: int = 500
    keep_last: int = 3
    average_last: int = 0  # >1: also write ckpt/avg-<K>.safetensors averaging the last K checkpoints
    # Single-task baseline with a multitask run's budget: train the one task in `tasks` for the
    # steps that a multitask run of this config over these tasks spends on it (its seeded task
    # draws replayed: as many batches of the task as the multitask model sees; warm-up x p_task).
    steps_share_of: list[str] = field(default_factory=list)
    # Regularisation of training batches only (dev batches and decoding never see it); all off by default.
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)  # time + frequency masks of input features
    label_smoothing: float = 0.0  # of the output cross-entropy (the logged/dev `ce` stays the plain one)
    class_crop_seconds: float = 0.0  # LID/GID inputs longer than this cut to a random window of this length (0 = off)
    # Seconds of (uncropped) speech per LID/GID batch; 0 = max_duration. With class_crop_seconds a
    # class batch holds more utterances (voices, sentences) for about the compute of one ASR batch.
    class_max_duration: float = 0.0
    perturb: VoicePerturbConfig = field(default_factory=VoicePerturbConfig)  # speed perturbation and VTLP of the fbank
