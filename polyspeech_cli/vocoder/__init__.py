"""The speech decoder: semantic features + a prompt's speaker embedding → mel → waveform."""
