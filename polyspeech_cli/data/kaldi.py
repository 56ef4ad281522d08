"""Kaldi data directories: `wav.scp`, `text`, `utt2spk`, optional `segments`, `spk2gender`, `utt2lang`."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import soundfile as sf
from lhotse import (
    AudioSource,
    Recording,
    RecordingSet,
    SupervisionSegment,
    SupervisionSet,
)

from polyspeech_cli.data.sources import UNSPLIT, Manifests
from polyspeech_cli.data.text import read_text_lines
from polyspeech_cli.data.validate import (
    BadItems,
    gender_label,
    language_code,
    positive_duration,
    probe_recording,
)
from polyspeech_cli.errors import (
    BadItemError,
    PolyspeechError,
    require_dir,
    require_file,
)


def read_kaldi_map(path: Path, bad: BadItems) -> dict[str, str]:
    """Read a Kaldi `key value...` file; duplicate keys and undecodable lines are bad items."""
    mapping: dict[str, str] = {}
    for lineno, line in read_text_lines(path, bad):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if key in mapping:
            err = BadItemError(f"{path}:{lineno}: duplicate utt_id '{key}' (ids must be unique)")
            if not bad.skip:
                raise err
            bad.dropped.append(str(err))
            continue
        mapping[key] = value.strip()
    return mapping


def _kaldi_recording(reco_id: str, spec: str, root: Path, audio_check: str) -> Recording:
    """A wav.scp entry: a path (relative to the data dir's parent is Kaldi's habit) or a `cmd |` pipe."""
    if spec.endswith("|"):
        # A pipe cannot be probed by path: run it once to learn the rate and length.
        command = spec[:-1].strip()
        try:
            audio = subprocess.run(command, shell=True, check=True, capture_output=True).stdout
            info = sf.info(io.BytesIO(audio))
        except Exception as e:
            raise BadItemError(f"wav.scp entry {reco_id}: command '{command}' did not produce audio ({e})") from None
        source = AudioSource(type="command", channels=[0], source=command)
        return Recording(id=reco_id, sources=[source], sampling_rate=info.samplerate, num_samples=info.frames, duration=info.frames / info.samplerate)
    path = Path(spec)
    if not path.is_absolute() and not path.exists():
        path = root / spec
    return probe_recording(path, reco_id, decode=audio_check == "full")


KALDI_FILES = ("wav.scp", "text", "utt2spk", "segments", "spk2gender", "utt2lang")


def kaldi_input_files(data_dir: Path) -> list[Path]:
    """The data dir's index files (what `prepare` stamps as its inputs; the audio is not listed)."""
    return [Path(data_dir) / name for name in KALDI_FILES]


def prepare_kaldi(data_dir: Path, bad: BadItems, language: str | None = None, audio_check: str = "full") -> Manifests:
    """Read a Kaldi data dir into unsplit Lhotse manifests.

    Language comes from `utt2lang` when present, else from `language` (required then).
    """
    data_dir = require_dir(Path(data_dir), "Kaldi data directory", "pass a folder with wav.scp, text and utt2spk")
    fix = "a Kaldi data dir needs wav.scp, text and utt2spk"
    wav_scp = read_kaldi_map(require_file(data_dir / "wav.scp", "wav.scp", fix), bad)
    texts = read_kaldi_map(require_file(data_dir / "text", "text file", fix), bad)
    utt2spk = read_kaldi_map(require_file(data_dir / "utt2spk", "utt2spk", fix), bad)
    optional = {name: read_kaldi_map(data_dir / name, bad) if (data_dir / name).is_file() else {} for name in ("segments", "spk2gender", "utt2lang")}
    if not wav_scp:
        raise PolyspeechError(f"{data_dir / 'wav.scp'}: empty (no recordings to prepare)")
    if not optional["utt2lang"]:
        if language is None:
            raise PolyspeechError(f"{data_dir}: no utt2lang file; pass --language (an ISO 639-1 code, e.g. en)")
        language = language_code(language, "--language")
    segments = optional["segments"] or {utt: f"{utt} 0 -1" for utt in wav_scp}

    recordings: dict[str, Recording] = {}
    supervisions = []
    for utt, seg in segments.items():
        item = bad.guard(_kaldi_utterance, data_dir, utt, seg, wav_scp, texts, utt2spk, optional, language, recordings, audio_check)
        if item is not None:
            supervisions.append(item)
    if not supervisions:
        raise PolyspeechError(f"{data_dir}: no usable utterances (empty data dir or every utterance was bad)")
    used = {s.recording_id for s in supervisions}
    return {UNSPLIT: (RecordingSet.from_recordings(r for k, r in recordings.items() if k in used), SupervisionSet.from_segments(supervisions))}


def _kaldi_utterance(data_dir, utt, seg, wav_scp, texts, utt2spk, optional, language, recordings, audio_check) -> SupervisionSegment:
    where = f"{data_dir}: utterance {utt}"
    reco_id, start, end = (seg.split() + ["", "", ""])[:3]
    if reco_id not in wav_scp:
        raise BadItemError(f"{where}: recording '{reco_id}' is not in wav.scp")
    if utt not in texts:
        raise BadItemError(f"{where}: no transcript in {data_dir / 'text'}")
    if reco_id not in recordings:
        recordings[reco_id] = _kaldi_recording(reco_id, wav_scp[reco_id], data_dir.parent, audio_check)
    recording = recordings[reco_id]
    start_s = float(start)
    end_s = recording.duration if float(end) < 0 else float(end)
    duration = positive_duration(round(end_s - start_s, 6), where)
    if start_s < 0 or end_s > recording.duration + 0.01:
        raise BadItemError(f"{where}: segment {start_s}-{end_s}s lies outside its {recording.duration:.2f}s recording")
    speaker = utt2spk.get(utt, utt)
    return SupervisionSegment(
        id=utt,
        recording_id=reco_id,
        start=start_s,
        duration=min(duration, recording.duration - start_s),
        channel=0,
        text=texts[utt],
        language=language_code(optional["utt2lang"][utt], where) if utt in optional["utt2lang"] else language,
        speaker=speaker,
        gender=gender_label(optional["spk2gender"].get(speaker, ""), where),
    )
