"""`polyspeech decode`: one task over a cut set -> `EXP/decode_<task>_<set>/` (ESPnet-like).

    results.jsonl   one JSON object per utterance (the contract of polyspeech_cli/score/results.py)
    hyp.trn ref.trn ASR: `text (uttid)` lines, for sclite
    wav/ cuts.jsonl.gz  TTS: generated audio and a Lhotse manifest of it (ASR it for the CER)
    decode.json     the settings; written last, it marks the directory as finished

The whole directory is built under a temporary name and renamed into place, so an interrupted
or failed decode leaves nothing behind, and a finished one is never re-done.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path

import numpy as np
import torch

from polyspeech_cli.decode import lm_io
from polyspeech_cli.decode.lm_fusion import NgramFusion
from polyspeech_cli.decode.recognize import classify_items, transcribe_items
from polyspeech_cli.lm.ngram import CharNgram
from polyspeech_cli.lm.tasks import LABEL_NAMES, check_task, reference, supervision
from polyspeech_cli.decode.tts import (
    Oracle,
    SpeechBackend,
    find_codec,
    find_vocoder,
    generate_speech,
    teacher_forced_speech,
)
from polyspeech_cli.errors import PolyspeechError, require_file
from polyspeech_cli.fileio import atomic_dir
from polyspeech_cli.decode.options import STAMP, DecodeOptions, already_decoded, decode_dir, decode_key
from polyspeech_cli.stamps import changed_keys, is_fresh, jsonable, read_stamp, write_stamp

# ---- the stage ----------------------------------------------------------------------------------
# The cut set is streamed, never held: decode reads it in windows of this many cuts (manifest
# order), sorts each window by length for batching, and writes each window's results before
# reading the next, so memory does not grow with the set.
WINDOW_CUTS = 2048


class PromptTable:
    """Per speaker, its two longest cuts (>= 1 s, with audio), built in one streaming pass: enough
    to give any cut of the speaker the longest *other* one as its speaker prompt (the first of
    equally long ones in manifest order)."""

    def __init__(self, cuts=()) -> None:
        self.best: dict[str, list] = {}
        for c in cuts:
            self.add(c)

    def add(self, c) -> None:
        s = supervision(c)
        if s is None or not s.speaker or c.duration < 1.0 or not c.has_recording:
            return
        top = self.best.setdefault(s.speaker, [])
        if not top or c.duration > top[0].duration:
            top.insert(0, c)
        elif len(top) < 2 or c.duration > top[1].duration:
            top[1:] = [c]
        del top[2:]

    def prompt(self, c):
        """Another cut of `c`'s speaker (>= 1 s, with audio), the longest; else a one-line error."""
        s = supervision(c)
        others = [o for o in self.best.get(s.speaker if s else None, []) if o.id != c.id]
        if not others:
            raise PolyspeechError(f"cut '{c.id}': no other utterance (>= 1 s, with audio) of speaker '{s.speaker if s else None}' "
                                  "in the cut set to prompt with; pass --prompt FILE")
        return others[0]


def pick_prompts(cuts, targets) -> dict[str, object]:
    """Per target cut, another cut of the same speaker (>= 1 s) as its speaker prompt: the longest.
    `cuts` is streamed once (a lazy CutSet will do)."""
    table = PromptTable(cuts)
    return {c.id: table.prompt(c) for c in targets}


def decode(exp_dir: Path, cuts_path: Path, opts: DecodeOptions, overwrite: bool = False, log=print, progress: bool = True,
           out_root: Path | None = None, device: str = "cpu") -> Path:
    """Run the decode stage; returns the decode dir, `<out_root>/decode_<task>_<set>` (default: in the exp dir).

    `device` runs the LM there (`auto`: this process's GPU when one is visible); the TTS back end
    stays on the CPU. Not part of the stamp: a device changes speed, not what is decoded.
    The cut set is streamed (`WINDOW_CUTS`): a pass to count and check it, then the decoding."""
    from polyspeech_cli.data.manifest import read_cuts
    from polyspeech_cli.training import pick_device

    check_task(opts.task)
    if opts.batch_size < 1 or opts.beam_size < 1:
        raise PolyspeechError("--batch-size and --beam-size must be >= 1")
    if not 0.0 <= opts.ctc_weight <= 1.0 or (opts.ctc_weight > 0 and opts.beam_size < 2):
        raise PolyspeechError("--ctc-weight must be in [0, 1] and needs --beam-size >= 2 (joint CTC/attention beam search)")
    if (opts.ngram is None) != (opts.lm_weight == 0) or opts.lm_weight < 0 or (opts.ngram and (opts.task != "asr" or opts.ctc_weight <= 0)):
        raise PolyspeechError("--ngram FILE and --lm-weight W > 0 go together, for --task asr with --ctc-weight > 0 and --beam-size >= 2")
    ngram_path = require_file(Path(opts.ngram), "n-gram LM", "train it with `polyspeech train ngram`") if opts.ngram else None
    oracle = Oracle.parse(opts.oracle) if opts.oracle else None
    if oracle is not None and opts.task != "tts":
        raise PolyspeechError("--oracle is for --task tts (the back end fed the cuts' own tokens, features or mel)")
    exp_dir = Path(exp_dir)
    fix = "run `polyspeech prepare` / `extract-tokens` first, or fix --cuts"
    cuts_path = require_file(Path(cuts_path), "cuts manifest", fix)
    # The stamp (any change re-decodes and says what changed) is checked before the model is loaded.
    checkpoint, key = decode_key(exp_dir, cuts_path, opts)
    out = decode_dir(exp_dir, opts, out_root)
    old = read_stamp(out / STAMP)
    if old is not None and not overwrite:
        if is_fresh(out / STAMP, key):
            log(already_decoded(out))
            return out
        log(f"{out} is stale ({'; '.join(changed_keys(old.get('key', {}), jsonable(key))[:4])}): decoding again")
        overwrite = True
    if out.exists() and old is None and not overwrite:
        raise PolyspeechError(f"{out} exists but was not written by a finished `polyspeech decode`: move it away or pass --overwrite")
    lm = lm_io.load_lm(exp_dir, checkpoint)
    lm.model.to(pick_device(device))
    text_lm = NgramFusion(CharNgram.load(ngram_path), lm.vocab) if ngram_path else None
    lm_io.require_task(lm, opts.task)
    all_cuts = read_cuts(cuts_path, fix=fix)  # lazy: every pass below re-reads the file

    def targets():
        return (c for c in all_cuts if reference(c, opts.task) is not None)

    # Pass 1: count (and, for TTS, the speakers' prompt candidates).
    table = PromptTable() if opts.task == "tts" and not opts.prompt else None
    n_all = n = 0
    for c in all_cuts:
        n_all += 1
        n += reference(c, opts.task) is not None
        if table is not None:
            table.add(c)
    if not n:
        raise PolyspeechError(f"{cuts_path}: no cut carries what '{opts.task}' needs (a supervision with {LABEL_NAMES[opts.task]})")
    if n < n_all:
        log(f"{cuts_path}: {n_all - n} cuts lack a reference for {opts.task} and are skipped")

    # Check everything that can fail on the user's input before any output is written.
    backend, fixed_prompt = None, None
    if opts.task == "tts":
        from polyspeech_cli.vocoder.synthesize import load_prompt

        backend = SpeechBackend(lm, find_codec(Path(opts.codec) if opts.codec else None, exp_dir, all_cuts),
                                find_vocoder(Path(opts.vocoder) if opts.vocoder else None, exp_dir))
        if opts.prompt:
            fixed_prompt = (*load_prompt(opts.prompt), str(opts.prompt))
        else:
            for c in targets():
                table.prompt(c)  # a speaker without another utterance -> error now
        for c in targets():
            lm_io.cut_item(lm, "tts", c)  # empty text, unknown language -> error now
            if oracle is not None and not oracle.from_lm_tokens:
                backend.check_oracle(oracle, c, cuts_path)
            elif oracle is not None and not c.has_custom(lm.cfg.data.speech_tokens):
                raise PolyspeechError(f"--oracle {oracle.kind}: cut '{c.id}' in {cuts_path} has no '{lm.cfg.data.speech_tokens}' tokens "
                                      f"(pass cuts from `polyspeech extract-tokens --type {lm.cfg.data.speech_tokens}`)")

    with atomic_dir(out) as tmp:
        num = _run(lm, opts, targets(), n, tmp, out, backend, table, fixed_prompt, progress, oracle, text_lm)
        write_stamp(tmp / STAMP, key, num_utts=num)
    log(f"decoded {num} utterances ({opts.task}) -> {out}")
    return out


def decoding_order(cuts: list, task: str) -> list:
    """Cuts sorted by input length (text for TTS): similar lengths in one batch mean less padding,
    and a batch finishes when its longest row does."""
    return sorted(cuts, key=lambda c: c.duration if task != "tts" else len(supervision(c).text))


def windows(cuts, size: int = WINDOW_CUTS):
    """Lists of up to `size` consecutive cuts of an iterable (a lazy CutSet is read as it goes)."""
    it = iter(cuts)
    while window := list(itertools.islice(it, size)):
        yield window


def _run(lm, opts: DecodeOptions, cuts, total: int, tmp: Path, out: Path, backend, prompts: PromptTable | None, fixed_prompt,
         progress: bool, oracle: Oracle | None = None, text_lm: NgramFusion | None = None) -> int:
    """Decode `cuts` (an iterable, streamed window by window) into `tmp`; returns the number of utterances."""
    import soundfile as sf

    from polyspeech_cli.audio import cut_audio
    from polyspeech_cli.console import make_progress

    gen = torch.Generator().manual_seed(opts.tts.seed)
    bar = make_progress()
    bar.disable = not progress
    with bar, _Outputs(opts.task, tmp) as outputs:
        job = bar.add_task(f"decode {opts.task}", total=total)
        for window in windows(cuts):
            rows: list[dict] = []
            order = decoding_order(window, opts.task)
            for i in range(0, len(order), opts.batch_size):
                chunk = order[i : i + opts.batch_size]
                items = [lm_io.cut_item(lm, opts.task, c) for c in chunk]
                if opts.task == "asr":
                    hyps = transcribe_items(lm, items, opts.beam_size, opts.length_penalty, opts.max_len_ratio, ctc_weight=opts.ctc_weight,
                                            text_lm=text_lm, lm_weight=opts.lm_weight)
                    for c, h in zip(chunk, hyps):
                        rows.append({"id": c.id, "task": "asr", "ref": supervision(c).text, "hyp": h, "language": supervision(c).language})
                elif opts.task in ("lid", "gid"):
                    for c, post in zip(chunk, classify_items(lm, opts.task, items)):
                        ref = reference(c, opts.task)
                        rows.append({"id": c.id, "task": opts.task, "ref": ref, "hyp": max(post, key=post.get), "posterior": post})
                else:
                    if oracle is not None:
                        ids = [lm.vocab.speech_ids(c.load_custom(lm.cfg.data.speech_tokens)) if oracle.from_lm_tokens else []
                               for c in chunk]
                        if oracle.kind == "teacher":
                            ids = teacher_forced_speech(lm, [it["text_ids"] for it in items], ids)
                    else:
                        ids = generate_speech(lm, [it["text_ids"] for it in items], opts.tts, gen)
                    for c, tok in zip(chunk, ids):
                        s = supervision(c)
                        if fixed_prompt is not None:
                            wave, sr, name = fixed_prompt
                            prompt_name = str(opts.prompt)
                        else:
                            p = prompts.prompt(c)
                            wave, sr, name = cut_audio(p), p.sampling_rate, f"prompt cut '{p.id}'"
                            prompt_name = p.id
                        if oracle is None or oracle.from_lm_tokens:
                            audio = backend.to_wave(tok, wave, sr, name)
                        else:
                            audio = backend.oracle_wave(oracle, c, wave, sr, name)
                        (tmp / "wav").mkdir(exist_ok=True)
                        (tmp / "ref").mkdir(exist_ok=True)
                        sf.write(tmp / "wav" / f"{c.id}.wav", audio, backend.sample_rate)
                        # The real recording of this utterance: the SECS reference of its speaker.
                        sf.write(tmp / "ref" / f"{c.id}.wav", cut_audio(c), c.sampling_rate)
                        rows.append({"id": c.id, "task": "tts", "wav": str((out / "wav" / f"{c.id}.wav").resolve()),
                                     "reference_wav": str((out / "ref" / f"{c.id}.wav").resolve()), "speaker": s.speaker,
                                     "text": s.text, "language": s.language, "gender": s.gender, "prompt": prompt_name,
                                     "num_tokens": len(tok), "duration": round(len(audio) / backend.sample_rate, 3)})
                bar.advance(job, len(chunk))
            order_index = {c.id: i for i, c in enumerate(window)}
            outputs.write(sorted(rows, key=lambda r: order_index[r["id"]]))  # manifest order
    return outputs.count


class _Outputs:
    """The decode dir's files in `tmp`, appended to window by window: results.jsonl; ASR: hyp.trn,
    ref.trn; TTS: cuts.jsonl.gz, a Lhotse manifest of the generated audio."""

    def __init__(self, task: str, tmp: Path) -> None:
        self.task, self.tmp, self.count = task, tmp, 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> _Outputs:
        from lhotse import CutSet

        def text(name: str):
            return self._stack.enter_context(open(self.tmp / name, "w", encoding="utf-8"))

        self.results = text("results.jsonl")
        if self.task == "asr":
            self.hyp, self.ref = text("hyp.trn"), text("ref.trn")
        if self.task == "tts":
            self.cuts = self._stack.enter_context(CutSet.open_writer(self.tmp / "cuts.jsonl.gz"))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def write(self, rows: list[dict]) -> None:
        self.count += len(rows)
        self.results.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        if self.task == "asr":
            self.hyp.write("".join(f"{r['hyp']} ({r['id']})\n" for r in rows))
            self.ref.write("".join(f"{r['ref']} ({r['id']})\n" for r in rows))
        if self.task == "tts":
            from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
            from lhotse.utils import fastcopy

            for r in rows:
                rec = Recording.from_file(self.tmp / "wav" / f"{r['id']}.wav", recording_id=r["id"])
                rec = fastcopy(rec, sources=[fastcopy(rec.sources[0], source=r["wav"])])  # the final location
                sup = SupervisionSegment(r["id"], r["id"], 0.0, rec.duration, text=r["text"], language=r["language"],
                                         speaker=r["speaker"], gender=r.get("gender"))
                for cut in CutSet.from_manifests(RecordingSet.from_recordings([rec]), SupervisionSet.from_segments([sup])):
                    self.cuts.write(cut)


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """A mono float32 waveform of an audio file, or a one-line error."""
    from polyspeech_cli.audio import read_audio as read

    path = Path(path)
    wave, sr = read(path, "audio file", "pass an existing WAV, FLAC or MP3 file")
    if wave.shape[0] < 0.1 * sr:
        raise PolyspeechError(f"{path}: only {wave.shape[0] / sr:.2f} s of audio (too short to transcribe)")
    return wave, sr


# ---- one-off use: transcribe files, synthesize one sentence -------------------------------------
def transcribe_files(exp_dir: Path, files: list[Path], beam_size: int = 1, length_penalty: float = 0.0,
                     checkpoint: Path | None = None) -> list[dict]:
    """ASR (+ LID and GID where the model was trained for them) of audio files, fbank on the fly."""
    lm = lm_io.load_lm(exp_dir, checkpoint)
    if not any(t in lm.tasks for t in ("asr", "lid", "gid")):
        raise PolyspeechError(f"the LM in {exp_dir} was trained for {', '.join(lm.tasks)} only: nothing to transcribe")
    if lm.speech_input != "features":
        raise PolyspeechError(f"the LM in {exp_dir} reads discrete '{lm.cfg.data.speech_tokens}' tokens; transcribe needs an LM on fbank "
                              "features (or extract tokens and use `polyspeech decode`)")
    items = []
    for f in files:
        wave, sr = read_audio(f)
        x = lm_io.wave_features(lm, wave, sr)
        if x.shape[0] < lm_io.min_input_frames(lm):
            raise PolyspeechError(f"{f}: too short to transcribe")
        items.append({"feats": x})
    rows = [{"file": str(f)} for f in files]
    if "asr" in lm.tasks:
        for r, h in zip(rows, transcribe_items(lm, items, beam_size, length_penalty)):
            r["text"] = h
    for task in ("lid", "gid"):
        if task in lm.tasks:
            for r, post in zip(rows, classify_items(lm, task, items)):
                best = max(post, key=post.get)
                r[task], r[f"{task}_p"] = best, post[best]
    return rows


def synthesize(exp_dir: Path, text: str, lang: str | None, prompt: Path, out: Path, codec: Path | None = None,
               vocoder: Path | None = None, opts: TTSOptions | None = None, checkpoint: Path | None = None) -> Path:
    """Text -> speech tokens -> features -> `out` (WAV), in the voice of `prompt`; atomic."""
    import soundfile as sf

    from polyspeech_cli.fileio import atomic_path
    from polyspeech_cli.vocoder.synthesize import load_prompt

    opts = opts or TTSOptions()
    lm = lm_io.load_lm(exp_dir, checkpoint)
    lm_io.require_task(lm, "tts")
    ids = lm_io.text_ids(lm, text, lang, "synthesize")
    wave, sr = load_prompt(prompt)
    backend = SpeechBackend(lm, find_codec(codec, exp_dir), find_vocoder(vocoder, exp_dir))
    tokens = generate_speech(lm, [ids], opts, torch.Generator().manual_seed(opts.seed))[0]
    audio = backend.to_wave(tokens, wave, sr, str(prompt))
    with atomic_path(Path(out)) as tmp:
        sf.write(str(tmp), audio, backend.sample_rate)
    return Path(out)
