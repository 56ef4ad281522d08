"""PolySpeech: one decoder-only multitask LM for ASR, TTS, LID and GID."""

__version__ = "0.1.0"
