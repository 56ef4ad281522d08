"""Train/dev/test splits: speaker-disjoint (gender-balanced) when there are enough speakers."""

from __future__ import annotations

import random
from collections import defaultdict

from lhotse import RecordingSet, SupervisionSet

from polyspeech_cli.data.sources import Manifests
from polyspeech_cli.errors import PolyspeechError

SPLIT_NAMES = ("train", "dev", "test")


def parse_ratios(text: str) -> tuple[float, float, float]:
    """Parse `0.8,0.1,0.1` (train,dev,test); they must be ≥ 0 and sum to 1."""
    try:
        ratios = tuple(float(x) for x in text.split(","))
    except ValueError:
        ratios = ()
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6 or ratios[0] == 0:
        raise PolyspeechError(f"--split-ratios '{text}': give three numbers train,dev,test ≥ 0 summing to 1, train > 0 (e.g. 0.8,0.1,0.1)")
    return ratios  # type: ignore[return-value]


def _assign_speakers(speakers: list[str], ratios: tuple[float, ...], rng: random.Random) -> dict[str, str]:
    """Give each split round(ratio × n) speakers of this group, at least one for a non-zero ratio."""
    speakers = sorted(speakers)
    rng.shuffle(speakers)
    n = len(speakers)
    counts = {name: (max(1, round(r * n)) if r > 0 else 0) for name, r in zip(SPLIT_NAMES[1:], ratios[1:])}
    assignment, i = {}, 0
    for name, count in counts.items():
        for spk in speakers[i : i + count]:
            assignment[spk] = name
        i += count
    for spk in speakers[i:]:
        assignment[spk] = "train"
    return assignment


def split_manifests(
    recordings: RecordingSet, supervisions: SupervisionSet, ratios: tuple[float, float, float], seed: int, min_speakers: int
) -> tuple[Manifests, bool]:
    """Split unsplit manifests; returns (splits, speaker_disjoint).

    With at least `min_speakers` speakers, whole speakers go to dev/test, drawn per gender so that
    each split keeps both genders; otherwise utterances are shuffled and cut by the ratios.
    """
    rng = random.Random(seed)
    by_gender: dict[str | None, set[str]] = defaultdict(set)
    for s in supervisions:
        by_gender[s.gender].add(s.speaker)
    n_speakers = len({s.speaker for s in supervisions})
    disjoint = n_speakers >= min_speakers and ratios[0] < 1
    if disjoint:
        speaker_split: dict[str, str] = {}
        for gender in sorted(by_gender, key=str):
            group = sorted(by_gender[gender] - set(speaker_split))
            nonzero = sum(r > 0 for r in ratios)
            speaker_split.update(_assign_speakers(group, ratios, rng) if len(group) >= nonzero + 1 else {s: "train" for s in group})
        split_of = {s.id: speaker_split[s.speaker] for s in supervisions}
    else:
        ids = sorted(s.id for s in supervisions)
        rng.shuffle(ids)
        n_train = round(ratios[0] * len(ids))
        n_dev = round(ratios[1] * len(ids))
        split_of = {i: "train" for i in ids[:n_train]} | {i: "dev" for i in ids[n_train : n_train + n_dev]} | {i: "test" for i in ids[n_train + n_dev :]}
    out: Manifests = {}
    for name in SPLIT_NAMES:
        sups = supervisions.filter(lambda s, name=name: split_of[s.id] == name)
        sups = SupervisionSet.from_segments(list(sups))
        if len(sups):
            reco_ids = {s.recording_id for s in sups}
            out[name] = (RecordingSet.from_recordings([r for r in recordings if r.id in reco_ids]), sups)
    return out, disjoint
