"""What every corpus source returns: Lhotse manifests per split ("all" = not split yet)."""

from __future__ import annotations

from lhotse import RecordingSet, SupervisionSet

UNSPLIT = "all"
Manifests = dict[str, tuple[RecordingSet, SupervisionSet]]
AUDIO_CHECKS = ("full", "header")
