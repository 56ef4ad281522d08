"""Corpus preparation: sources → validated Lhotse manifests."""
