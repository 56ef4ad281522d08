"""A small ctypes binding to libespeak-ng as bundled by the `espeakng-loader` wheel.

We talk to the C library directly (rather than running the `espeak-ng` program) because the
wheel ships only the shared library and its data: no system eSpeak is needed, and synthesising
in-process avoids one subprocess and one WAV file per utterance.

libespeak-ng keeps its state in globals, so one process can hold one initialised engine:
`EspeakSynthesizer()` initialises it on first use and later instances share it. That state
also leaks from one utterance into the next (see `synthesize_in_subprocess`), so bit-exact
reproducible audio needs a fresh process per batch of requests.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from polyspeech_cli.errors import PolyspeechError

if TYPE_CHECKING:
    import numpy as np

# Values from espeak-ng's speak_lib.h (stable C API).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() on a bad data path
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # add eSpeak's sentence-final pause; trimmed later anyway
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0

# Limits eSpeak accepts: rate in words per minute, pitch 0..100 (50 = the voice's default).
RATE_RANGE = (80, 450)
PITCH_RANGE = (0, 100)

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
_engine: "_Engine | None" = None


class _Engine:
    """The process-wide libespeak-ng handle plus the buffer its callback fills."""

    def __init__(self) -> None:
        lib_path, data_path = _locate()
        try:
            self.lib = ctypes.CDLL(lib_path)
        except OSError as err:
            raise PolyspeechError(f"cannot load libespeak-ng from {lib_path}: {err} (reinstall with: pip install --force-reinstall espeakng-loader)") from err
        self._declare()
        # The loader gives the espeak-ng-data directory itself, which espeak-ng accepts as the
        # path (it also accepts its parent).
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise PolyspeechError(f"libespeak-ng failed to initialise with data at {data_path} (reinstall with: pip install --force-reinstall espeakng-loader)")
        self.sample_rate = int(rate)
        self.chunks: list[bytes] = []
        # Keep a reference: a garbage-collected ctypes callback would crash the library.
        self._callback = _SYNTH_CALLBACK(self._on_samples)
        self.lib.espeak_SetSynthCallback(self._callback)
        # eSpeak's noise sources (breathy variants, Klatt voices) use both its own generator and
        # libc rand(); we reseed both per utterance so the noise is reproducible.
        try:
            self._libc: ctypes.CDLL | None = ctypes.CDLL(None)
        except OSError:  # no process-wide symbol table (Windows): only eSpeak's own seed is set
            self._libc = None
        self._variants_dir = Path(data_path) / "voices" / "!v"
        self.current_voice: str | None = None

    def _declare(self) -> None:
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None

    def _on_samples(self, wav, num_samples: int, _events) -> int:
        """Synth callback: copy this chunk of int16 samples; return 0 to keep going."""
        if wav and num_samples > 0:
            self.chunks.append(ctypes.string_at(wav, num_samples * 2))
        return 0

    def set_voice(self, voice: str) -> None:
        if voice == self.current_voice:
            return
        # eSpeak silently ignores an unknown variant ("en+nosuch" speaks with the default), so
        # check it against the variant files ourselves.
        variant = voice.partition("+")[2]
        if variant and not (self._variants_dir / variant).is_file():
            raise PolyspeechError(f"unknown eSpeak voice variant {variant!r} in {voice!r} (see {self._variants_dir} for the available ones)")
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            self.current_voice = None
            raise PolyspeechError(f"unknown eSpeak voice {voice!r} (use a language like 'en' or 'cmn', optionally with a variant: 'en+f2')")
        self.current_voice = voice

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, seed: int) -> bytes:
        """16-bit native-endian PCM at `self.sample_rate` (bytes: keeps worker processes numpy-free)."""
        self.set_voice(voice)
        # Parameters are set after the voice because selecting a voice resets them.
        self.lib.espeak_SetParameter(_PARAM_RATE, _clip(rate, RATE_RANGE), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, _clip(pitch, PITCH_RANGE), 0)
        self.lib.espeak_ng_SetRandSeed(seed & 0x7FFFFFFF)
        if self._libc is not None:
            self._libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        data = text.encode("utf-8") + b"\0"
        self.chunks = []
        status = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        if status != _EE_OK:
            raise PolyspeechError(f"eSpeak failed (status {status}) on text {text[:40]!r} with voice {voice!r}")
        self.lib.espeak_Synchronize()
        return b"".join(self.chunks)


def _clip(value: int, bounds: tuple[int, int]) -> int:
    return int(min(max(int(value), bounds[0]), bounds[1]))


def _locate() -> tuple[str, str]:
    """Paths of the bundled shared library and espeak-ng-data directory."""
    try:
        import espeakng_loader
    except ImportError as err:
        raise PolyspeechError("the Python package espeakng-loader is missing (install it with: pip install espeakng-loader)") from err
    try:
        lib_path, data_path = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except Exception as err:  # the loader raises RuntimeError for a missing data dir
        raise PolyspeechError(f"espeakng-loader is broken: {err} (reinstall with: pip install --force-reinstall espeakng-loader)") from err
    if not Path(lib_path).is_file():
        raise PolyspeechError(f"libespeak-ng not found at {lib_path} (reinstall with: pip install --force-reinstall espeakng-loader)")
    return str(lib_path), str(data_path)


def _get_engine() -> _Engine:
    global _engine
    with _lock:
        if _engine is None:
            _engine = _Engine()
        return _engine


class EspeakSynthesizer:
    """Text to speech with libespeak-ng; all instances in a process share one engine."""

    def __init__(self) -> None:
        self._engine = _get_engine()
        self.sample_rate: int = self._engine.sample_rate

    def synthesize(self, text: str, voice: str, rate: int = 175, pitch: int = 50, seed: int = 0) -> np.ndarray:
        """Speak `text` with `voice` (e.g. "en+f2"), `rate` in words/min and `pitch` 0..100.

        Returns float32 mono samples in [-1, 1] at `self.sample_rate`. `seed` fixes eSpeak's
        noise generators; the samples still depend slightly on what this process synthesised
        before (engine state no API resets): use `synthesize_in_subprocess` for exact repeats.
        """
        with _lock:
            pcm = self._engine.synthesize(text, voice, rate, pitch, seed)
        return pcm_to_float(pcm)


def pcm_to_float(pcm: bytes) -> np.ndarray:
    """int16 PCM bytes -> float32 samples in [-1, 1]."""
    import numpy as np  # imported here so that worker processes, which never call this, start fast

    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def synthesize_pcm(requests: list[tuple[str, str, int, int, int]]) -> tuple[int, list[bytes]]:
    """Synthesise (text, voice, rate, pitch, seed) requests in order: (sample_rate, int16 PCM each)."""
    engine = _get_engine()
    with _lock:
        return engine.sample_rate, [engine.synthesize(*request) for request in requests]


def synthesize_in_subprocess(requests: list[tuple[str, str, int, int, int]]) -> tuple[int, list[bytes]]:
    """`synthesize_pcm` in a fresh Python process, i.e. from a pristine eSpeak engine.

    libespeak-ng keeps state between utterances that its API cannot reset (a pitch-flutter
    phase, a gain control...), so only a fresh process makes the samples a function of the
    requests alone. A plain `python -c` child (not multiprocessing) never re-imports the
    caller's `__main__`, so it is safe from scripts without an `if __name__ == "__main__"` guard,
    and it imports nothing but this module (~50 ms).
    """
    package_root = str(Path(__file__).resolve().parents[2])  # makes an uninstalled checkout importable
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p))
    cmd = [sys.executable, "-c", "from polyspeech_cli.data.espeak import _worker_main; _worker_main()"]
    proc = subprocess.run(cmd, input=pickle.dumps(requests), capture_output=True, env=env, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"eSpeak worker process failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    status, payload = pickle.loads(proc.stdout)
    if status != "ok":
        raise PolyspeechError(payload)
    return payload


def _worker_main() -> None:
    """Child side of `synthesize_in_subprocess`: pickled requests on stdin, pickled result on stdout."""
    # Keep the real stdout for the result and point fd 1 at stderr, so that anything the C
    # library prints cannot corrupt the pickle stream.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = pickle.load(sys.stdin.buffer)
    try:
        result: tuple[str, object] = ("ok", synthesize_pcm(requests))
    except PolyspeechError as err:
        result = ("error", str(err))
    pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
    out.close()
