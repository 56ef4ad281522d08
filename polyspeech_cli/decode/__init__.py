"""Decoding with the PolySpeech LM: search, TTS waveform generation, the decode stage."""
