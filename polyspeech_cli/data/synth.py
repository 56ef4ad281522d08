"""The generated multilingual corpus ("synth"): eSpeak-NG speech for random word sequences.

It exists so that every recipe stage can run end to end with no download: 5 languages, 37
voices (21 male, 16 female), speaker-disjoint train/dev/test splits (8 held-out voices each for
dev and test, 4 per gender), Lhotse manifests.

Determinism. libespeak-ng carries hidden state from one utterance to the next (a pitch-flutter
phase, a gain control, a cycle counter that none of its API resets), so the same call gives
different samples depending on what was synthesised before. We therefore synthesise each
(split, speaker) block in a fresh worker process, in a fixed order: the audio is then a pure
function of the config, whatever ran before in this process, and however many workers run. Resuming
re-synthesises a block that misses any file (cheap: eSpeak runs ~1000x real time) and writes
only the missing files, so they are identical to those of a clean run.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import lhotse
import numpy as np
import soundfile as sf
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from polyspeech_cli.audio import resample
from polyspeech_cli.data.espeak import pcm_to_float, synthesize_in_subprocess
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_path, atomic_write_text

SPLITS = ("train", "dev", "test")
STAMP_NAME = "synth_config.json"
RESAMPLER = "lhotse Resample (sinc_interp_hann)"  # recorded in the stamp: audio made by another resampler is not resumed
UNSPACED_LANGUAGES = {"zh"}  # written without spaces between words

# ISO 639-1 code -> eSpeak-NG language voice. Adding a language needs a word list too.
LANGUAGE_VOICES: dict[str, str] = {
    "en": "en-us",
    "zh": "cmn",  # Mandarin, reads Hanzi (espeak-ng-data/lang/sit/cmn)
    "de": "de",
    "fr": "fr",
    "es": "es",
}


@dataclass(frozen=True)
class SynthVoice:
    """One speaker: an eSpeak voice variant with its own base pitch (0..100) and rate (words/min)."""

    variant: str
    gender: str
    pitch: int
    rate: int

    @property
    def speaker(self) -> str:
        return f"synth-{self.variant.lower()}"


# Variants from espeak-ng-data/voices/!v that declare a gender (all 37 but the whispered, robotic
# and effect voices: croak, whisper, whisperf, Demonic, Storm, UniRobot, anikaRobot, AnxiousAndy).
# Base pitch/rate are spread so that voices sharing a similar formant set still differ in prosody.
VOICES: tuple[SynthVoice, ...] = (
    SynthVoice("m1", "M", 45, 165),
    SynthVoice("m2", "M", 55, 180),
    SynthVoice("m3", "M", 40, 175),
    SynthVoice("m4", "M", 50, 170),
    SynthVoice("m5", "M", 60, 160),
    SynthVoice("m6", "M", 35, 185),
    SynthVoice("m7", "M", 50, 155),
    SynthVoice("m8", "M", 55, 175),
    SynthVoice("Andy", "M", 45, 180),
    SynthVoice("Lee", "M", 50, 160),
    SynthVoice("Denis", "M", 40, 170),
    SynthVoice("Diogo", "M", 55, 165),
    SynthVoice("Henrique", "M", 45, 175),
    SynthVoice("Hugo", "M", 50, 185),
    SynthVoice("Marco", "M", 60, 170),
    SynthVoice("antonio", "M", 40, 160),
    SynthVoice("michel", "M", 50, 165),
    SynthVoice("miguel", "M", 45, 170),
    SynthVoice("sandro", "M", 55, 160),
    SynthVoice("travis", "M", 40, 180),
    SynthVoice("victor", "M", 50, 175),
    SynthVoice("f1", "F", 50, 175),
    SynthVoice("f2", "F", 40, 165),
    SynthVoice("f3", "F", 55, 185),
    SynthVoice("f4", "F", 50, 170),
    SynthVoice("f5", "F", 45, 160),
    SynthVoice("belinda", "F", 40, 175),
    SynthVoice("anika", "F", 50, 165),
    SynthVoice("steph", "F", 60, 170),
    SynthVoice("steph2", "F", 50, 180),
    SynthVoice("steph3", "F", 45, 165),
    SynthVoice("Andrea", "F", 55, 170),
    SynthVoice("Alicia", "F", 50, 160),
    SynthVoice("Annie", "F", 45, 175),
    SynthVoice("aunty", "F", 50, 165),
    SynthVoice("grandma", "F", 40, 155),
    SynthVoice("linda", "F", 55, 175),
)

# Held-out speakers: 4 male and 4 female per split, so GID and every per-voice figure rest on
# 8 unseen voices; the other 21 (13 male, 8 female) are training voices. The steph variants stay
# together in train (they share one formant set).
HELD_OUT: dict[str, tuple[str, ...]] = {
    "dev": ("synth-m8", "synth-lee", "synth-diogo", "synth-travis", "synth-f5", "synth-andrea", "synth-aunty", "synth-anika"),
    "test": ("synth-m4", "synth-andy", "synth-hugo", "synth-michel", "synth-f4", "synth-f3", "synth-annie", "synth-linda"),
}


@dataclass
class SynthConfig:
    """What to generate. The defaults give ~3.6 h of training speech over 5 languages."""

    languages: list[str] = field(default_factory=lambda: ["en", "zh", "de", "fr", "es"])
    train_utts_per_language: int = 1000
    dev_utts_per_language: int = 40
    test_utts_per_language: int = 40
    min_words: int = 3
    max_words: int = 10
    seed: int = 0
    sample_rate: int = 16000
    pitch_jitter: int = 8  # +- on eSpeak's 0..100 pitch scale, per utterance
    rate_jitter: float = 0.1  # +- fraction of the voice's base rate, per utterance
    trim_keep_s: float = 0.1  # silence kept before and after the speech
    num_workers: int = 2  # synthesis processes (each handles whole blocks, so any number is deterministic)


@dataclass(frozen=True)
class _Utterance:
    utt_id: str
    split: str
    language: str
    voice: SynthVoice
    text: str
    rate: int
    pitch: int
    seed: int

    @property
    def espeak_voice(self) -> str:
        return f"{LANGUAGE_VOICES[self.language]}+{self.voice.variant}"


def split_voices(split: str) -> list[SynthVoice]:
    """The voices of `split`, alternating male/female so small splits still get both genders."""
    if split == "train":
        held = {s for speakers in HELD_OUT.values() for s in speakers}
        voices = [v for v in VOICES if v.speaker not in held]
    else:
        voices = [v for v in VOICES if v.speaker in HELD_OUT[split]]
    males = [v for v in voices if v.gender == "M"]
    females = [v for v in voices if v.gender == "F"]
    return [v for pair in zip(males, females) for v in pair] + males[len(females):] + females[len(males):]


def load_wordlist(language: str) -> list[str]:
    """The shipped word list of `language`: distinct lower-case words, in file order."""
    try:
        text = resources.files("polyspeech_cli.data").joinpath("wordlists", f"{language}.txt").read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise PolyspeechError(f"no word list for language {language!r} in polyspeech_cli/data/wordlists (available: {', '.join(LANGUAGE_VOICES)})") from err
    words = [w.strip().lower() for w in text.splitlines()]
    return list(dict.fromkeys(w for w in words if w))


def _check_config(config: SynthConfig) -> None:
    if not config.languages:
        raise PolyspeechError("synth config: `languages` is empty (use e.g. [en, zh, de, fr, es])")
    unknown = [lang for lang in config.languages if lang not in LANGUAGE_VOICES]
    if unknown:
        raise PolyspeechError(f"synth config: unsupported language(s) {', '.join(unknown)} (supported: {', '.join(LANGUAGE_VOICES)})")
    if len(set(config.languages)) != len(config.languages):
        raise PolyspeechError(f"synth config: `languages` lists a language twice: {config.languages}")
    if config.sample_rate < 8000:
        raise PolyspeechError(f"synth config: sample_rate {config.sample_rate} is too low (use 16000)")
    if not 1 <= config.min_words <= config.max_words:
        raise PolyspeechError(f"synth config: need 1 <= min_words <= max_words, got {config.min_words}..{config.max_words}")
    for split in SPLITS:
        if getattr(config, f"{split}_utts_per_language") < 0:
            raise PolyspeechError(f"synth config: {split}_utts_per_language must be >= 0")


def _draw_sentence(rng: random.Random, words: list[str], language: str, config: SynthConfig, used: set[str]) -> str:
    """A sentence never drawn before (so no dev/test sentence can occur in train)."""
    joiner = "" if language in UNSPACED_LANGUAGES else " "
    for _ in range(1000):
        n = rng.randint(config.min_words, config.max_words)
        sentence = joiner.join(rng.choice(words) for _ in range(n))
        if sentence not in used:
            used.add(sentence)
            return sentence
    raise PolyspeechError(f"synth: cannot draw more distinct {language} sentences (raise max_words or lower the utterance counts)")


def plan_utterances(config: SynthConfig) -> list[_Utterance]:
    """Every utterance of the corpus, with its text and prosody, in a fixed order.

    Test and dev are drawn before train so that their sentences (and audio) do not depend on
    the size of the training set.
    """
    _check_config(config)
    rng = random.Random(config.seed)
    wordlists = {lang: load_wordlist(lang) for lang in config.languages}
    used: set[str] = set()
    plan: list[_Utterance] = []
    for split in ("test", "dev", "train"):
        voices = split_voices(split)
        k = 0  # counts over languages too, so 1 utterance per language still rotates voices
        for language in config.languages:
            for i in range(getattr(config, f"{split}_utts_per_language")):
                voice = voices[k % len(voices)]
                k += 1
                utt_id = f"{voice.speaker}-{language}-{i:05d}"
                text = _draw_sentence(rng, wordlists[language], language, config, used)
                # Prosody from the utterance's own RNG: independent of every other utterance.
                urng = random.Random(f"{config.seed}/{utt_id}")
                rate = round(voice.rate * (1 + urng.uniform(-config.rate_jitter, config.rate_jitter)))
                pitch = round(voice.pitch + urng.uniform(-config.pitch_jitter, config.pitch_jitter))
                plan.append(_Utterance(utt_id, split, language, voice, text, rate, pitch, urng.getrandbits(31)))
    return plan


def _audio_path(corpus_dir: Path, utt: _Utterance) -> Path:
    return corpus_dir / utt.split / utt.voice.speaker / f"{utt.utt_id}.flac"


def _trim(audio: np.ndarray, sample_rate: int, keep_s: float) -> np.ndarray:
    """Cut leading/trailing silence, keeping `keep_s` seconds (zero-padded if eSpeak gave less)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0:
        return audio
    active = np.flatnonzero(np.abs(audio) > peak * 10 ** (-40 / 20))  # -40 dB below the peak
    keep = int(round(keep_s * sample_rate))
    start, end = active[0] - keep, active[-1] + 1 + keep
    out = audio[max(start, 0): min(end, audio.size)]
    return np.pad(out, (max(-start, 0), max(end - audio.size, 0)))


def _write_flac(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")


def _blocks(plan: list[_Utterance]) -> list[list[_Utterance]]:
    """Group utterances by (split, speaker), the unit synthesised in one fresh process."""
    groups: dict[tuple[str, str], list[_Utterance]] = {}
    for utt in plan:
        groups.setdefault((utt.split, utt.voice.speaker), []).append(utt)
    return list(groups.values())


def _synthesize_blocks(blocks: list[list[_Utterance]], num_workers: int) -> Iterator[tuple[int, list[bytes]]]:
    """(sample_rate, int16 PCM per utterance) for each block, in order; one fresh process per block.

    At most `num_workers` blocks run ahead of the consumer, which bounds memory (a training
    block holds a few minutes of audio).
    """
    todo = iter([(u.text, u.espeak_voice, u.rate, u.pitch, u.seed) for u in block] for block in blocks)
    # Threads only wait on the child processes.
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        pending = collections.deque(pool.submit(synthesize_in_subprocess, r) for r in itertools.islice(todo, max(1, num_workers)))
        try:
            while pending:
                result = pending.popleft().result()
                for request in itertools.islice(todo, 1):
                    pending.append(pool.submit(synthesize_in_subprocess, request))
                yield result
        finally:
            for future in pending:
                future.cancel()


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]synth {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=not show,
    )


def generate_synth(corpus_dir: Path, config: SynthConfig, show_progress: bool = True) -> dict[str, tuple[lhotse.RecordingSet, lhotse.SupervisionSet]]:
    """Generate (or complete) the corpus under `corpus_dir`; return manifests for train/dev/test.

    Audio goes to `corpus_dir/<split>/<speaker>/<utt_id>.flac` (16-bit FLAC). Existing files
    are kept, so an interrupted run can be resumed.
    """
    corpus_dir = Path(corpus_dir)
    plan = plan_utterances(config)
    _check_stamp(corpus_dir, config)
    blocks = _blocks(plan)
    todo = {i for i, b in enumerate(blocks) if not all(_audio_path(corpus_dir, u).is_file() for u in b)}
    synthesized = _synthesize_blocks([blocks[i] for i in sorted(todo)], config.num_workers)
    recordings: dict[str, list[lhotse.Recording]] = {s: [] for s in SPLITS}
    supervisions: dict[str, list[lhotse.SupervisionSegment]] = {s: [] for s in SPLITS}
    with _progress(show_progress) as progress, contextlib.closing(synthesized):
        task = progress.add_task("", total=len(plan))
        for i, block in enumerate(blocks):
            progress.update(task, description=f"{block[0].split} {block[0].voice.speaker}")
            if i in todo:
                native_sr, pcms = next(synthesized)
                for utt, pcm in zip(block, pcms):
                    path = _audio_path(corpus_dir, utt)
                    if not path.is_file():
                        audio = _trim(pcm_to_float(pcm), native_sr, config.trim_keep_s)
                        _write_flac(path, resample(audio, native_sr, config.sample_rate), config.sample_rate)
            for utt in block:
                recording, supervision = _manifest(corpus_dir, utt, config.sample_rate)
                recordings[utt.split].append(recording)
                supervisions[utt.split].append(supervision)
                progress.advance(task)
    return {s: (lhotse.RecordingSet.from_recordings(recordings[s]), lhotse.SupervisionSet.from_segments(supervisions[s])) for s in SPLITS}


def synth_input_files(corpus_dir: Path) -> list[Path]:
    """What `prepare synth` stamps as its input: the corpus's config stamp (gone = corpus deleted)."""
    return [Path(corpus_dir) / STAMP_NAME]


def _check_stamp(corpus_dir: Path, config: SynthConfig) -> None:
    """Record the config in `corpus_dir`; refuse to resume a corpus made with a different one.

    File names do not encode the config, so resuming with other settings would keep old audio
    under names whose text has changed.
    """
    stamp = {k: v for k, v in dataclasses.asdict(config).items() if k != "num_workers"}  # the only field that does not change the output
    # The resampler (native eSpeak rate -> sample_rate) changes the samples too: polyspeech_cli.audio.resample.
    stamp["resampler"] = RESAMPLER
    stamp["voices"] = {split: [f"{v.speaker}:{v.gender}:{v.pitch}:{v.rate}" for v in split_voices(split)] for split in SPLITS}
    stamp = json.loads(json.dumps(stamp))  # compare as JSON types (a tuple of languages equals a list)
    path = corpus_dir / STAMP_NAME
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        changed = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in stamp.items() if old.get(k) != v]
        if changed:
            raise PolyspeechError(f"{corpus_dir} holds a synth corpus made with other settings ({'; '.join(changed)}); delete it or use another directory")
        return
    atomic_write_text(path, json.dumps(stamp, indent=1, ensure_ascii=False) + "\n")


def _manifest(corpus_dir: Path, utt: _Utterance, sample_rate: int) -> tuple[lhotse.Recording, lhotse.SupervisionSegment]:
    path = _audio_path(corpus_dir, utt)
    recording = lhotse.Recording.from_file(path, recording_id=utt.utt_id)
    if recording.sampling_rate != sample_rate:
        raise PolyspeechError(f"{path} has sample rate {recording.sampling_rate}, config wants {sample_rate} (delete {corpus_dir} and regenerate)")
    supervision = lhotse.SupervisionSegment(
        id=utt.utt_id, recording_id=utt.utt_id, start=0.0, duration=recording.duration, channel=0,
        text=utt.text, language=utt.language, speaker=utt.voice.speaker, gender=utt.voice.gender,
    )
    return recording, supervision
