"""Checks shared by every corpus source: languages, durations, audio files, bad-item policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pycountry
from lhotse import Recording

from polyspeech_cli.audio import error_reason, wav_header_frames
from polyspeech_cli.errors import BadItemError

T = TypeVar("T")
GENDERS = {"M": "M", "F": "F", "m": "M", "f": "F", "male": "M", "female": "F", "": None, "u": None, "unknown": None}


@dataclass
class BadItems:
    """The `--skip-bad` policy: raise on the first bad item, or drop it and remember why."""

    skip: bool = False
    dropped: list[str] = field(default_factory=list)

    def guard(self, fn: Callable[..., T], *args: object) -> T | None:
        """Run `fn(*args)`; a BadItemError is raised again, or recorded (returns None) when skipping."""
        try:
            return fn(*args)
        except BadItemError as e:
            if not self.skip:
                raise
            self.dropped.append(str(e))
            return None


def language_code(code: str, where: str) -> str:
    """Normalise a language label to ISO 639-1 (`en`, `zh`); 639-3 codes with a 2-letter form are mapped."""
    code = code.strip()
    lang = None
    if len(code) == 2:
        lang = pycountry.languages.get(alpha_2=code.lower())
    elif len(code) == 3:
        lang = pycountry.languages.get(alpha_3=code.lower())
    if lang is None or not hasattr(lang, "alpha_2"):
        raise BadItemError(f"{where}: unknown language code '{code}' (use an ISO 639-1 code such as en, zh, de)")
    return lang.alpha_2


def gender_label(value: str, where: str) -> str | None:
    """Map gender spellings to `M`, `F` or None (unknown)."""
    if value.strip() not in GENDERS:
        raise BadItemError(f"{where}: unknown gender '{value}' (use M, F or leave it empty)")
    return GENDERS[value.strip()]


def positive_duration(value: str | float, where: str) -> float:
    """Parse a duration and require it to be > 0 seconds."""
    try:
        duration = float(value)
    except ValueError:
        raise BadItemError(f"{where}: duration '{value}' is not a number (write seconds, e.g. 3.25)") from None
    if not duration > 0:
        raise BadItemError(f"{where}: duration {duration} is not positive (drop the utterance or fix its audio)")
    return duration


def probe_recording(path: Path, recording_id: str, decode: bool = True) -> Recording:
    """Make a Lhotse Recording for `path`; with `decode`, read every sample to catch corrupt files."""
    path = Path(path)
    fix = "re-encode it (e.g. `sox in.wav -r 16000 -b 16 out.flac`) or pass --skip-bad"
    if not path.is_file():
        raise BadItemError(f"{path}: audio file not found (utterance {recording_id}); fix the path or pass --skip-bad")
    try:
        recording = Recording.from_file(path, recording_id=recording_id)
    except Exception as e:  # lhotse wraps every backend's failure in its own error types
        raise BadItemError(f"{path}: not a readable audio file ({error_reason(e)}); {fix}") from None
    if recording.num_samples <= 0:
        raise BadItemError(f"{path}: audio file has no samples; {fix}")
    if decode:
        header = wav_header_frames(path) if path.suffix.lower() == ".wav" else None
        if header is not None and header > recording.num_samples:
            raise BadItemError(f"{path}: truncated WAV ({recording.num_samples} of {header} samples present); {fix}")
        try:
            recording.load_audio()
        except Exception as e:
            raise BadItemError(f"{path}: corrupt or truncated audio ({error_reason(e)}); {fix}") from None
    return recording
