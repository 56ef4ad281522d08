"""`polyspeech decode`: one task over a cut set -> `EXP/decode_<task>_<set>/` (ESPnet-like).

    results.jsonl   one JSON object per utterance (the contract of polyspeech_cli/score/results.py)
    hyp.trn ref.trn ASR: `text (uttid)` lines, for sclite
    wav/ cuts.jsonl.gz  TTS: generated audio and a Lhotse manifest of it (ASR it for the CER)
    decode.json     the settings; written last, it marks the directory as finished

The whole directory is built under a temporary name and renamed into place, so an interrupted
or failed decode leaves nothing behind, and a finished one is never re-done.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from polyspeech_cli.decode import lm_io
from polyspeech_cli.decode.recognize import classify_items, transcribe_items
from polyspeech_cli.lm.tasks import LABEL_NAMES, check_task, reference, supervision
from polyspeech_cli.decode.tts import (
    Oracle,
    SpeechBackend,
    TTSOptions,
    find_codec,
    find_vocoder,
    generate_speech,
)
from polyspeech_cli.errors import PolyspeechError, require_file
from polyspeech_cli.stamps import changed_keys, is_fresh, jsonable, read_stamp, stamp_key, write_stamp

STAMP = "decode.json"  # written last: the directory holds a finished decode



@dataclass
class DecodeOptions:
    task: str
    set_name: str = "test"
    batch_size: int = 8
    beam_size: int = 1
    length_penalty: float = 0.0
    ctc_weight: float = 0.0  # ASR beam: joint CTC/attention decoding weight (CTC prefix scores; 0 = attention only)
    max_len_ratio: float = 2.0  # ASR: at most this x the expected text length (training rate x speech positions)
    checkpoint: str | None = None
    tts: TTSOptions = field(default_factory=TTSOptions)
    prompt: str | None = None
    codec: str | None = None
    vocoder: str | None = None
    # TTS: feed the back end the cut's real data instead of sampled tokens (`Oracle.parse`: tokens,
    # books:K, features, mel), scored like any TTS output: the rows of the back end's loss waterfall
    oracle: str | None = None


# ---- the stage ----------------------------------------------------------------------------------
def pick_prompts(cuts: list, targets: list) -> dict[str, object]:
    """Per target cut, another cut of the same speaker (>= 1 s) as its speaker prompt: the longest."""
    by_spk: dict[str, list] = {}
    for c in cuts:
        s = supervision(c)
        if s is not None and s.speaker and c.duration >= 1.0 and c.has_recording:
            by_spk.setdefault(s.speaker, []).append(c)
    out = {}
    for c in targets:
        s = supervision(c)
        others = [o for o in by_spk.get(s.speaker if s else None, []) if o.id != c.id]
        if not others:
            raise PolyspeechError(f"cut '{c.id}': no other utterance (>= 1 s, with audio) of speaker '{s.speaker if s else None}' "
                                  "in the cut set to prompt with; pass --prompt FILE")
        out[c.id] = max(others, key=lambda o: o.duration)
    return out


def decode(exp_dir: Path, cuts_path: Path, opts: DecodeOptions, overwrite: bool = False, log=print, progress: bool = True,
           out_root: Path | None = None, device: str = "cpu") -> Path:
    """Run the decode stage; returns the decode dir, `<out_root>/decode_<task>_<set>` (default: in the exp dir).

    `device` runs the LM there (`auto`: this process's GPU when one is visible); the TTS back end
    stays on the CPU. Not part of the stamp: a device changes speed, not what is decoded."""
    from lhotse import CutSet

    from polyspeech_cli.training import pick_device

    check_task(opts.task)
    if opts.batch_size < 1 or opts.beam_size < 1:
        raise PolyspeechError("--batch-size and --beam-size must be >= 1")
    if not 0.0 <= opts.ctc_weight <= 1.0 or (opts.ctc_weight > 0 and opts.beam_size < 2):
        raise PolyspeechError("--ctc-weight must be in [0, 1] and needs --beam-size >= 2 (joint CTC/attention beam search)")
    oracle = Oracle.parse(opts.oracle) if opts.oracle else None
    if oracle is not None and opts.task != "tts":
        raise PolyspeechError("--oracle is for --task tts (the back end fed the cuts' own tokens, features or mel)")
    exp_dir = Path(exp_dir)
    cuts_path = require_file(Path(cuts_path), "cuts manifest", "run `polyspeech prepare` / `extract-tokens` first, or fix --cuts")
    lm = lm_io.load_lm(exp_dir, Path(opts.checkpoint) if opts.checkpoint else None)
    lm.model.to(pick_device(device))
    lm_io.require_task(lm, opts.task)
    out = Path(out_root or exp_dir) / f"decode_{opts.task}_{opts.set_name}"
    # The stamp: options + the checkpoint and cuts files; any change re-decodes (and says what changed).
    key = stamp_key(opts, [lm.checkpoint, cuts_path])
    old = read_stamp(out / STAMP)
    if old is not None and not overwrite:
        if is_fresh(out / STAMP, key):
            log(f"{out} is already decoded with these settings, checkpoint and cuts: nothing to do")
            return out
        log(f"{out} is stale ({'; '.join(changed_keys(old.get('key', {}), jsonable(key))[:4])}): decoding again")
        overwrite = True
    if out.exists() and old is None and not overwrite:
        raise PolyspeechError(f"{out} exists but was not written by a finished `polyspeech decode`: move it away or pass --overwrite")
    try:
        all_cuts = CutSet.from_file(cuts_path).to_eager()
    except Exception as e:
        raise PolyspeechError(f"{cuts_path}: not a readable Lhotse cuts manifest ({type(e).__name__}: {e})") from e
    cuts = [c for c in all_cuts if reference(c, opts.task) is not None]
    if not cuts:
        raise PolyspeechError(f"{cuts_path}: no cut carries what '{opts.task}' needs (a supervision with {LABEL_NAMES[opts.task]})")
    if len(cuts) < len(all_cuts):
        log(f"{cuts_path}: {len(all_cuts) - len(cuts)} cuts lack a reference for {opts.task} and are skipped")

    # Check everything that can fail on the user's input before any output is written.
    backend, prompts, fixed_prompt = None, {}, None
    if opts.task == "tts":
        from polyspeech_cli.vocoder.synthesize import load_prompt

        backend = SpeechBackend(lm, find_codec(Path(opts.codec) if opts.codec else None, exp_dir, all_cuts),
                                find_vocoder(Path(opts.vocoder) if opts.vocoder else None, exp_dir))
        if opts.prompt:
            fixed_prompt = (*load_prompt(opts.prompt), str(opts.prompt))
        else:
            prompts = pick_prompts(list(all_cuts), cuts)
        for c in cuts:
            lm_io.cut_item(lm, "tts", c)  # empty text, unknown language -> error now
            if oracle is not None and oracle.kind != "tokens":
                backend.check_oracle(oracle, c, cuts_path)
            elif oracle is not None and not c.has_custom(lm.cfg.data.speech_tokens):
                raise PolyspeechError(f"--oracle tokens: cut '{c.id}' in {cuts_path} has no '{lm.cfg.data.speech_tokens}' tokens "
                                      f"(pass cuts from `polyspeech extract-tokens --type {lm.cfg.data.speech_tokens}`)")

    tmp = out.parent / f".tmp.{out.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        rows = _run(lm, opts, cuts, tmp, out, backend, prompts, fixed_prompt, progress, oracle)
        _write_outputs(opts.task, rows, tmp, out)
        write_stamp(tmp / STAMP, key, num_utts=len(rows))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"decoded {len(rows)} utterances ({opts.task}) -> {out}")
    return out


def decoding_order(cuts: list, task: str) -> list:
    """Cuts sorted by input length (text for TTS): similar lengths in one batch mean less padding,
    and a batch finishes when its longest row does."""
    return sorted(cuts, key=lambda c: c.duration if task != "tts" else len(supervision(c).text))


def _run(lm, opts: DecodeOptions, cuts: list, tmp: Path, out: Path, backend, prompts: dict, fixed_prompt, progress: bool,
         oracle: Oracle | None = None) -> list[dict]:
    import soundfile as sf

    from polyspeech_cli.audio import cut_audio
    from polyspeech_cli.console import make_progress

    rows: list[dict] = []
    gen = torch.Generator().manual_seed(opts.tts.seed)
    order = decoding_order(cuts, opts.task)
    bar = make_progress()
    bar.disable = not progress
    with bar:
        job = bar.add_task(f"decode {opts.task}", total=len(order))
        for i in range(0, len(order), opts.batch_size):
            chunk = order[i : i + opts.batch_size]
            items = [lm_io.cut_item(lm, opts.task, c) for c in chunk]
            if opts.task == "asr":
                hyps = transcribe_items(lm, items, opts.beam_size, opts.length_penalty, opts.max_len_ratio, ctc_weight=opts.ctc_weight)
                for c, h in zip(chunk, hyps):
                    rows.append({"id": c.id, "task": "asr", "ref": supervision(c).text, "hyp": h, "language": supervision(c).language})
            elif opts.task in ("lid", "gid"):
                for c, post in zip(chunk, classify_items(lm, opts.task, items)):
                    ref = reference(c, opts.task)
                    rows.append({"id": c.id, "task": opts.task, "ref": ref, "hyp": max(post, key=post.get), "posterior": post})
            else:
                if oracle is not None:
                    ids = [lm.vocab.speech_ids(c.load_custom(lm.cfg.data.speech_tokens)) if oracle.kind == "tokens" else []
                           for c in chunk]
                else:
                    ids = generate_speech(lm, [it["text_ids"] for it in items], opts.tts, gen)
                for c, tok in zip(chunk, ids):
                    s = supervision(c)
                    if fixed_prompt is not None:
                        wave, sr, name = fixed_prompt
                    else:
                        p = prompts[c.id]
                        wave, sr, name = cut_audio(p), p.sampling_rate, f"prompt cut '{p.id}'"
                    if oracle is None or oracle.kind == "tokens":
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
                                 "text": s.text, "language": s.language, "gender": s.gender,
                                 "prompt": str(opts.prompt) if fixed_prompt is not None else prompts[c.id].id,
                                 "num_tokens": len(tok), "duration": round(len(audio) / backend.sample_rate, 3)})
            bar.advance(job, len(chunk))
    order_index = {c.id: i for i, c in enumerate(cuts)}
    return sorted(rows, key=lambda r: order_index[r["id"]])


def _write_outputs(task: str, rows: list[dict], tmp: Path, out: Path) -> None:
    (tmp / "results.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    if task == "asr":
        (tmp / "hyp.trn").write_text("".join(f"{r['hyp']} ({r['id']})\n" for r in rows), encoding="utf-8")
        (tmp / "ref.trn").write_text("".join(f"{r['ref']} ({r['id']})\n" for r in rows), encoding="utf-8")
    if task == "tts":
        from lhotse import (
            CutSet,
            Recording,
            RecordingSet,
            SupervisionSegment,
            SupervisionSet,
        )
        from lhotse.utils import fastcopy

        recs, sups = [], []
        for r in rows:
            rec = Recording.from_file(tmp / "wav" / f"{r['id']}.wav", recording_id=r["id"])
            rec = fastcopy(rec, sources=[fastcopy(rec.sources[0], source=r["wav"])])  # the final location
            recs.append(rec)
            sups.append(SupervisionSegment(r["id"], r["id"], 0.0, rec.duration, text=r["text"], language=r["language"],
                                           speaker=r["speaker"], gender=r.get("gender")))
        cuts = CutSet.from_manifests(RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups))
        cuts.to_file(tmp / "cuts.jsonl.gz")


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
