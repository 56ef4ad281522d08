"""Scoring of decode outputs (`decode_<task>_<set>/results.jsonl`) into ESPnet-style tables."""
