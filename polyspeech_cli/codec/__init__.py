"""The SSET codec: a conv encoder-decoder with residual VQ over continuous speech features."""
