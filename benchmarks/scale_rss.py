"""Peak memory of `train lm` and `train vocoder` on a cut set and on one 8x its size.

    python3 benchmarks/scale_rss.py [--scale 8] [--utts 2100] [--out benchmarks/scale_rss.json]

Generates an egs/mini-sized training manifest (2100 cuts, ~1.5 h: 80-dim fbank at 10 ms, 16 kHz
audio, 4-codebook SSET tokens as `cut.custom["sset"]`, text/language/speaker/gender) and one
`--scale` times larger, then runs each trainer for a few steps in its own subprocess
(`polyspeech train lm -c conf/lm_tiny.yaml`, tasks asr,tts,lid,gid; `polyspeech train vocoder -c
conf/vocoder_tiny.yaml`) and reads that process's peak RSS (`os.wait4` rusage, ru_maxrss).
Prints a JSON summary and a markdown table (ratio = peak RSS at Nx / at 1x; the target is <= 1.3).

To keep the disk use and the generation time small, the cuts draw their audio, features and tokens
from a pool of `--pool` stored utterances (each cut its own id, supervision and speaker; cuts that
share a pool item point at the same stored arrays). A trainer that holds per-cut data in RAM still
grows with the number of cuts (it loads every cut's arrays separately); one that streams does not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LANGS = ("en", "zh", "de", "fr", "es")
SR = 16000


def make_pool(root: Path, n: int, seed: int = 0) -> list:
    """`n` stored utterances (1.5-3.6 s): audio file, fbank features, SSET tokens; returns template cuts."""
    import soundfile as sf
    from lhotse import CutSet, Fbank, FbankConfig, NumpyFilesWriter, Recording, RecordingSet

    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    recs = []
    for j in range(n):
        dur = round(float(rng.uniform(1.5, 3.6)), 2)
        t = np.arange(int(dur * SR)) / SR
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 250) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
        path = root / "audio" / f"src{j:03d}.wav"
        sf.write(path, x.astype(np.float32), SR)
        recs.append(Recording.from_file(path, recording_id=f"src{j:03d}"))
    cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs)).to_eager()
    cuts = cuts.compute_and_store_features(Fbank(FbankConfig(num_mel_bins=80)), storage_path=root / "fbank",
                                           storage_type=NumpyFilesWriter, num_jobs=1)
    out = []
    with NumpyFilesWriter(root / "sset") as writer:
        for cut in cuts:
            tokens = rng.integers(0, 2048, size=(cut.num_frames // 2, 4), dtype=np.int64)
            cut.custom = {"sset": writer.store_array(cut.id, tokens, frame_shift=0.02, temporal_dim=0)}
            out.append(cut)
    (root / "sset" / "sset.json").write_text('{"type": "sset", "num_codebooks": 4, "codebook_size": 2048, "frame_shift": 0.02}\n')
    return out


def write_manifest(path: Path, pool: list, n_cuts: int, seed: int = 1) -> float:
    """`n_cuts` cuts over the pool, 16 speakers (8 M, 8 F) x 5 languages; returns the hours."""
    from lhotse import CutSet, SupervisionSegment
    from lhotse.utils import fastcopy

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz "))
    seconds = 0.0
    with CutSet.open_writer(path) as w:
        for i in range(n_cuts):
            src = pool[int(rng.integers(len(pool)))]
            spk = int(rng.integers(16))
            text = "".join(letters[rng.integers(len(letters), size=int(src.duration * 12))]).strip() or "a"
            cid = f"c{i:06d}"
            sup = SupervisionSegment(id=cid, recording_id=src.recording_id, start=0.0, duration=src.duration, text=text,
                                     language=LANGS[spk % len(LANGS)], speaker=f"spk{spk:02d}", gender="MF"[spk % 2])
            w.write(fastcopy(src, id=cid, supervisions=[sup]))
            seconds += src.duration
    return seconds / 3600


def measure(cmd: list[str], log: Path) -> dict:
    """Run `cmd` in a fresh process; its own peak RSS (MiB, from wait4's rusage) and wall time."""
    t0 = time.time()
    with log.open("w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONHASHSEED": "0"})
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}; see {log}:\n{log.read_text()[-2000:]}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "wall_s": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utts", type=int, default=2100, help="cuts of the 1x set (egs/mini's training set: 2100)")
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--pool", type=int, default=64)
    ap.add_argument("--lm-steps", type=int, default=20)
    ap.add_argument("--vocoder-steps", type=int, default=20)
    ap.add_argument("--work-dir", type=Path, default=None, help="keep the data and exp dirs here (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON summary here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.work_dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        pool = make_pool(root / "pool", args.pool)
        sets = {}
        for k in (1, args.scale):
            path = root / f"cuts_{k}x.jsonl.gz"
            sets[k] = {"path": path, "cuts": args.utts * k, "hours": round(write_manifest(path, pool, args.utts * k), 2)}
        desc = ", ".join("%dx %d cuts %.2f h" % (k, s["cuts"], s["hours"]) for k, s in sets.items())
        print(f"data: {desc} ({time.time() - t0:.0f} s)", flush=True)
        polyspeech = [sys.executable, "-c", "from polyspeech_cli.cli import main; main()"]
        results = {}
        # One process per measurement.
        for name, base in (
            ("vocoder", ["train", "vocoder", "-c", str(REPO / "conf/vocoder_tiny.yaml"), "--max-steps", str(args.vocoder_steps),
                         "--threads", "1", "--device", "cpu", "--no-progress"]),
            ("lm", ["train", "lm", "-c", str(REPO / "conf/lm_tiny.yaml"), "--tasks", "asr,tts,lid,gid", "--speech-tokens", "sset",
                    "--max-steps", str(args.lm_steps), "--threads", "1", "--device", "cpu", "--no-progress"]),
        ):
            for k, s in sets.items():
                exp = root / f"exp_{name}_{k}x"
                cmd = polyspeech + base + ["--train-cuts", str(s["path"]), "--exp-dir", str(exp)]
                m = measure(cmd, root / f"{name}_{k}x.log")
                results.setdefault(name, {})[f"{k}x"] = m
                print(f"{name} {k}x: peak RSS {m['peak_rss_mib']} MiB, {m['wall_s']} s", flush=True)
            r = results[name]
            r["ratio"] = round(r[f"{args.scale}x"]["peak_rss_mib"] / r["1x"]["peak_rss_mib"], 3)
    summary = {"sets": {f"{k}x": {"cuts": s["cuts"], "hours": s["hours"]} for k, s in sets.items()}, "results": results,
               "target_ratio": 1.3}
    print(json.dumps(summary, indent=1))
    n = f"{args.scale}x"
    print(f"\n| trainer | 1x ({sets[1]['cuts']} cuts, {sets[1]['hours']} h) | {n} ({sets[args.scale]['cuts']} cuts, "
          f"{sets[args.scale]['hours']} h) | ratio |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| `train {name}` | {r['1x']['peak_rss_mib']:.0f} MiB | {r[n]['peak_rss_mib']:.0f} MiB | {r['ratio']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
