"""Train/dev/test splits: speaker-disjoint (gender-balanced) when there are enough speakers."""

from __future__ import annotations

import random
from collections import defaultdict

from lhotse import RecordingSet, SupervisionSet

from polyspeech_cli.data.sources import Manifests
from polyspeech_cli.errors import PolyspeechError

SPLIT_NAMES = ("train", "dev", "test")


def parse_ratios(text: str) -> tuple[float, float, float]:
    """Parse `0.8,0.1,0.1` (train,dev,test); they must be ≥ 0 and sum to 1. Train may be 0: a set
    that only evaluates a model (`0,0,1`, what `--split test` means)."""
    try:
        ratios = tuple(float(x) for x in text.split(","))
    except ValueError:
        ratios = ()
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6:
        raise PolyspeechError(f"--split-ratios '{text}': give three numbers train,dev,test ≥ 0 summing to 1 "
                              "(e.g. 0.8,0.1,0.1; 0,0,1 for a test-only set, or --split test)")
    return ratios  # type: ignore[return-value]


def single_split_ratios(split: str) -> tuple[float, float, float]:
    """The ratios that put a whole corpus into one split (`--split test` = `0,0,1`)."""
    if split not in SPLIT_NAMES:
        raise PolyspeechError(f"--split '{split}': choose one of {', '.join(SPLIT_NAMES)}")
    return tuple(1.0 if name == split else 0.0 for name in SPLIT_NAMES)  # type: ignore[return-value]


def nonzero_splits(ratios: tuple[float, ...]) -> list[str]:
    """The splits that get utterances; one only: the corpus is not split at all."""
    return [name for name, r in zip(SPLIT_NAMES, ratios) if r > 0]


def _remainder_split(ratios: tuple[float, ...]) -> str:
    """The split that takes what rounding leaves over: train, or without a train split the larger
    of dev and test (test on a tie)."""
    if ratios[0] > 0:
        return "train"
    return "dev" if ratios[1] > ratios[2] else "test"


def _assign_speakers(speakers: list[str], ratios: tuple[float, ...], rng: random.Random) -> dict[str, str]:
    """Give each split round(ratio × n) speakers of this group, at least one for a non-zero ratio;
    the remainder split (train, when there is one) takes the rest."""
    speakers = sorted(speakers)
    rng.shuffle(speakers)
    n = len(speakers)
    rest = _remainder_split(ratios)
    counts = {name: (max(1, round(r * n)) if r > 0 else 0) for name, r in zip(SPLIT_NAMES[1:], ratios[1:]) if name != rest}
    assignment, i = {}, 0
    for name, count in counts.items():
        for spk in speakers[i : i + count]:
            assignment[spk] = name
        i += count
    for spk in speakers[i:]:
        assignment[spk] = rest
    return assignment


def split_manifests(
    recordings: RecordingSet, supervisions: SupervisionSet, ratios: tuple[float, float, float], seed: int, min_speakers: int
) -> tuple[Manifests, bool]:
    """Split unsplit manifests; returns (splits, speaker_disjoint).

    With at least `min_speakers` speakers, whole speakers go to dev/test, drawn per gender so that
    each split keeps both genders; otherwise utterances are shuffled and cut by the ratios. A split
    with ratio 0 gets nothing (train included: `0,0,1` is a test-only set); with one non-zero ratio
    the whole corpus goes to that split as it is (no shuffle).
    """
    only = nonzero_splits(ratios)
    if len(only) == 1:
        return {only[0]: (recordings, supervisions)}, False
    rng = random.Random(seed)
    by_gender: dict[str | None, set[str]] = defaultdict(set)
    for s in supervisions:
        by_gender[s.gender].add(s.speaker)
    n_speakers = len({s.speaker for s in supervisions})
    disjoint = n_speakers >= min_speakers
    if disjoint:
        speaker_split: dict[str, str] = {}
        # a group too small to give every split a speaker (and train one more) goes to the remainder split
        needed = len(only) + 1 if ratios[0] > 0 else len(only)
        for gender in sorted(by_gender, key=str):
            group = sorted(by_gender[gender] - set(speaker_split))
            speaker_split.update(_assign_speakers(group, ratios, rng) if len(group) >= needed else {s: _remainder_split(ratios) for s in group})
        split_of = {s.id: speaker_split[s.speaker] for s in supervisions}
    else:
        ids = sorted(s.id for s in supervisions)
        rng.shuffle(ids)
        n_train = round(ratios[0] * len(ids))
        # a zero test ratio gets no utterances: dev takes what rounding leaves
        n_dev = round(ratios[1] * len(ids)) if ratios[2] > 0 else len(ids) - n_train
        split_of = {i: "train" for i in ids[:n_train]} | {i: "dev" for i in ids[n_train : n_train + n_dev]} | {i: "test" for i in ids[n_train + n_dev :]}
    out: Manifests = {}
    for name in SPLIT_NAMES:
        sups = supervisions.filter(lambda s, name=name: split_of[s.id] == name)
        sups = SupervisionSet.from_segments(list(sups))
        if len(sups):
            reco_ids = {s.recording_id for s in sups}
            out[name] = (RecordingSet.from_recordings([r for r in recordings if r.id in reco_ids]), sups)
    return out, disjoint
