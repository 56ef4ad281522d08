"""Speech representations: fbank / HuBERT features and EnCodec / k-means / SSET tokens."""
