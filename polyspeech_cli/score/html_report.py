"""`polyspeech report`: one self-contained static HTML page per recipe run.

Speech people judge TTS by ear, and the numbers of RESULTS.md mean little until one has heard a
few sentences; without this page they dig WAV files out of `exp/`. The page holds RESULTS.md
rendered (its tables and figures), then a handful of TTS test sentences, each with its prompt,
the real recording, what every TTS system made of it (the resynthesized real tokens included)
and that utterance's scores: the TTS judge's transcript and CER, SECS and MCD.

Everything (PNGs, WAVs) is embedded as base64 data URIs, so the page is one file that can be
mailed, archived or opened from any folder. What is missing (no TTS decode yet, a PNG that was
not drawn, no judge transcript) is left out with a note on the page instead of failing: the page
is a viewer of whatever a run has produced so far; only a directory without RESULTS.md is an error.

Where things are found (the layout `egs/*/run.sh` writes; ids tie them together):
- TTS decodes: `decode_tts_<set>/results.jsonl` (rows: id, text, wav, reference_wav, prompt) under
  `DIR/exp/*/` for a recipe dir, else under `DIR/` and `DIR/*/`. A decode whose `decode.json`
  names an `oracle` (`decode --oracle`) fed the back end real data: a resynthesis.
- The judge of a TTS decode: an ASR decode (anywhere in the same exp tree) whose `decode.json`
  names that TTS decode's `cuts.jsonl.gz` as its input; its own real-audio decode
  `decode_asr_<set>` gives the reference row its transcript.
- The prompt: the results' `prompt` is a cut id of the same set, whose real recording the TTS
  decode wrote to `ref/<id>.wav`, or a file given with `decode --prompt`.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path

from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.fileio import atomic_write_text
from polyspeech_cli.score.results import decode_inputs, read_results
from polyspeech_cli.stamps import read_stamp

DEFAULT_UTTS = 4
RESYNTH_LABEL = "back end fed real data"


@dataclass
class Clip:
    """One audio player of a TTS sample, with the scores that belong to that audio."""

    source: str
    path: Path | None  # None: not on disk (the reason is in `missing`)
    missing: str = ""
    heard: str | None = None  # the TTS judge's transcript
    cer: float | None = None  # the judge's CER on this audio, as a fraction
    secs: float | None = None
    mcd: float | None = None
    reference: Path | None = None  # real audio SECS and MCD compare with (synthesized clips only)


@dataclass
class TTSDecode:
    """One TTS system's decode of a set: its rows by utterance id and the judge's transcripts of them."""

    label: str
    path: Path
    rows: dict[str, dict]
    oracle: bool
    judge: Path | None = None  # the judge's ASR decode dir of this audio
    heard: dict[str, dict] = field(default_factory=dict)  # utterance id -> the judge's ASR row

    @property
    def set_name(self) -> str:
        return self.path.name.removeprefix("decode_tts_")


@dataclass
class ReportPage:
    """What `write_report` wrote: the page, the notes about what was left out, the sentences shown."""

    path: Path
    notes: list[str]
    utterances: list[str]


# ---- finding the pieces ---------------------------------------------------------------------------
def results_file(directory: Path) -> Path:
    """DIR/RESULTS.md, or one error that names DIR and how to get one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PolyspeechError(f"{directory}: not a directory (pass a recipe dir such as egs/mini, or an exp dir holding RESULTS.md)")
    path = directory / "RESULTS.md"
    if not path.is_file():
        raise PolyspeechError(f"{directory}: no RESULTS.md (run the recipe's scoring stage first, e.g. `./run.sh --stage 6` in a "
                              "recipe dir, or `polyspeech score`/`compare --out DIR/RESULTS.md`; or pass the dir that holds it)")
    return path


def search_roots(directory: Path) -> tuple[list[Path], list[Path]]:
    """(where TTS systems are looked for, where their judges are): a recipe dir's `exp/`; for an
    exp dir itself, that dir, while judges may also sit in its sibling exp dirs (e.g. lm_asr)."""
    directory = Path(directory)
    if (directory / "exp").is_dir():
        return [directory / "exp"], [directory / "exp"]
    return [directory], [directory, directory.parent]


def decode_dirs(roots: list[Path], task: str) -> list[Path]:
    """Every `decode_<task>_*` dir holding results.jsonl in a root or one level below, sorted, once each."""
    found = {d.resolve(): d for root in roots for pattern in (f"decode_{task}_*", f"*/decode_{task}_*")
             for d in Path(root).glob(pattern) if (d / "results.jsonl").is_file()}
    return [found[k] for k in sorted(found)]


def _options(decode_dir: Path) -> dict:
    return ((read_stamp(decode_dir / "decode.json") or {}).get("key") or {}).get("options") or {}


def system_label(decode_dir: Path, oracle: str | None) -> str:
    """What the page calls a TTS system: multitask or single-task by the LM's config, with its exp dir
    name; a resynthesis by the real data it fed the back end (`decode --oracle`)."""
    import yaml

    exp = decode_dir.parent
    if oracle:
        return f"{RESYNTH_LABEL}: {oracle} ({exp.name})"
    try:
        tasks = (yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8")) or {}).get("tasks") or []
    except (OSError, yaml.YAMLError):
        tasks = []
    kind = {0: ""}.get(len(tasks), "single-task" if len(tasks) == 1 else "multitask")
    label = f"{kind} ({exp.name})" if kind else exp.name
    return label + ("" if decode_dir.name == "decode_tts_test" else f", {decode_dir.name.removeprefix('decode_tts_')}")


def load_tts_decodes(roots: list[Path], notes: list[str]) -> list[TTSDecode]:
    """The TTS decodes under `roots`, systems first and resyntheses last; an unreadable one is noted and skipped."""
    decodes = []
    for d in decode_dirs(roots, "tts"):
        try:
            task, rows = read_results(d)
        except PolyspeechError as e:
            notes.append(f"TTS decode left out: {e}")
            continue
        if task == "tts":
            oracle = _options(d).get("oracle")
            decodes.append(TTSDecode(system_label(d, oracle), d, {r["id"]: r for r in rows}, bool(oracle)))
    return sorted(decodes, key=lambda t: t.oracle)


def _tts_id(asr_id: str, ids: dict) -> str | None:
    """The TTS utterance an ASR row of its audio belongs to: the same id, or the id Lhotse gave
    the cut of the synthesized recording (`<recording id>-<index>`)."""
    if asr_id in ids:
        return asr_id
    base = asr_id.rsplit("-", 1)[0]
    return base if base in ids else None


def attach_judges(decodes: list[TTSDecode], roots: list[Path], notes: list[str]) -> None:
    """Give each TTS decode the judge's transcripts of its audio: the ASR decode whose input is that
    decode's cuts.jsonl.gz (matched on `<exp>/<decode dir>` so a moved run still matches); the latest if several."""
    asr = decode_dirs(roots, "asr")
    for t in decodes:
        tail = (t.path.parent.name, t.path.name, "cuts.jsonl.gz")
        judged = [a for a in asr if any(Path(p).parts[-3:] == tail for p in decode_inputs(a))]
        if not judged:
            notes.append(f"{t.label}: no ASR decode of its audio (the TTS judge's transcripts), so no per-utterance TTS CER")
            continue
        t.judge = max(judged, key=lambda a: (a / "results.jsonl").stat().st_mtime_ns)
        _, rows = read_results(t.judge)
        t.heard = {tid: r for r in rows if (tid := _tts_id(r["id"], t.rows)) is not None}


def pick_utterances(decodes: list[TTSDecode], n: int) -> list[str]:
    """`n` utterance ids of the first system's set, those every decode has first, one language after
    another and each from a voice not heard yet where there is one (so four sentences show four
    languages and four voices rather than four sentences of the first speaker)."""
    first = decodes[0]
    ids = sorted(first.rows, key=lambda i: -sum(i in t.rows for t in decodes))  # stable: results order within a count
    by_language: dict[str, list[str]] = {}
    for i in ids:
        by_language.setdefault(str(first.rows[i].get("language")), []).append(i)
    picked: list[str] = []
    while len(picked) < min(n, len(ids)):
        for queue in by_language.values():
            if queue and len(picked) < n:
                heard = {first.rows[p].get("speaker") for p in picked}
                picked.append(queue.pop(next((k for k, i in enumerate(queue) if first.rows[i].get("speaker") not in heard), 0)))
    return picked


# ---- one sentence -----------------------------------------------------------------------------------
def _on_disk(recorded: str | None, decode_dir: Path, sub: str) -> Path | None:
    """A file a decode recorded: the same name in the decode's own `sub`/ folder (the recorded path is
    absolute, and a run copied or moved since would otherwise show another run's audio), else that path."""
    if not recorded:
        return None
    path = Path(recorded)
    return next((p for p in (decode_dir / sub / path.name, path) if p.is_file()), None)


def _char_error_rate(ref: str, hyp: str) -> float:
    from polyspeech_cli.score.asr import count_errors

    return count_errors([ref], [hyp], "char").error_rate


def _judged(clip: Clip, row: dict | None) -> Clip:
    if row is not None:
        clip.heard, clip.cer = row["hyp"], _char_error_rate(row["ref"], row["hyp"])
    return clip


def prompt_clip(row: dict, decode: TTSDecode) -> Clip:
    """The speaker prompt: another cut of the same set (its real recording is that cut's ref/ file), or a `--prompt` file."""
    prompt = str(row.get("prompt") or "")
    candidates = [decode.path / "ref" / f"{prompt}.wav", Path(prompt)] if prompt else []
    path = next((p for p in candidates if p.is_file()), None)
    return Clip(f"prompt ({Path(prompt).name or 'none'})", path, "" if path else f"the prompt's audio is not on disk ({prompt or 'no prompt recorded'})")


def reference_heard(decodes: list[TTSDecode]) -> dict[str, dict]:
    """The judge's transcripts of the real test audio (its own `decode_asr_<set>`), for the reference row."""
    t = next((t for t in decodes if t.judge is not None and not t.oracle), None)
    if t is None or not (t.judge.parent / f"decode_asr_{t.set_name}" / "results.jsonl").is_file():
        return {}
    _, rows = read_results(t.judge.parent / f"decode_asr_{t.set_name}")
    return {r["id"]: r for r in rows}


def sample_clips(uid: str, decodes: list[TTSDecode], real_heard: dict[str, dict]) -> list[Clip]:
    """The players of one sentence: prompt, real recording, then each decode's audio with the judge's verdict."""
    first = decodes[0]
    row = first.rows[uid]
    ref = _on_disk(row.get("reference_wav"), first.path, "ref")
    clips = [prompt_clip(row, first),
             _judged(Clip("reference (real recording)", ref, "" if ref else "no real recording of this sentence"), real_heard.get(uid))]
    for t in decodes:
        r = t.rows.get(uid)
        wav = _on_disk(r.get("wav"), t.path, "wav") if r else None
        missing = "" if wav else ("not in this decode" if r is None else "its WAV is not on disk")
        reference = _on_disk(r.get("reference_wav"), t.path, "ref") if r else None
        clips.append(_judged(Clip(t.label, wav, missing, reference=reference), t.heard.get(uid)))
    return clips


def score_clips(clips: list[Clip], notes: list[str]) -> None:
    """SECS and MCD of each synthesized clip against its real recording, with the scorers of
    `polyspeech score` (per utterance: scores.json holds only the set's means). SECS needs the
    `eval` extra; without it the column is left empty and the page says why."""
    from polyspeech_cli.score.mcd import mcd_files
    from polyspeech_cli.score.secs import embed_files

    scored = [c for c in clips if c.path is not None and c.reference is not None]
    if not scored:
        return
    for c in scored:
        c.mcd = mcd_files(str(c.reference), str(c.path))
    try:
        emb = embed_files([str(p) for c in scored for p in (c.path, c.reference)])
    except PolyspeechError as e:
        notes.append(f"SECS left out: {e}")
        return
    for c in scored:
        c.secs = float(emb[str(c.path)] @ emb[str(c.reference)])


# ---- HTML ---------------------------------------------------------------------------------------------
def data_uri(path: Path) -> str:
    """The file as a `data:` URI, so the page needs nothing beside it."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if mime == "audio/x-wav":
        mime = "audio/wav"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def markdown_html(text: str, base: Path, notes: list[str]) -> tuple[str, set[str]]:
    """RESULTS.md as HTML (CommonMark + tables, raw HTML escaped), its local images embedded; an image
    that is not on disk becomes a note in its place. Returns (HTML, the image files referenced)."""
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    referenced: set[str] = set()
    for tok in tokens:
        for i, child in enumerate(tok.children or []):
            src = child.attrGet("src") if child.type == "image" else None
            if not isinstance(src, str) or ":" in src:  # not an image, or a URL: left alone
                continue
            referenced.add(src)
            if (base / src).is_file():
                child.attrSet("src", data_uri(base / src))
            else:
                note = f"figure {src} is not beside {base / 'RESULTS.md'} (not drawn in this run)"
                notes.append(note)
                tok.children[i] = Token("text", "", 0, content=f"[{note}]")
    return md.renderer.render(tokens, md.options, {}), referenced


def _audio(clip: Clip) -> str:
    if clip.path is None:
        return f'<span class="missing">{html.escape(clip.missing)}</span>'
    return f'<audio controls preload="metadata" src="{data_uri(clip.path)}"></audio>'


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _duration(path: Path | None) -> str:
    import soundfile as sf

    return "–" if path is None else f"{sf.info(str(path)).duration:.2f}"


def sample_html(uid: str, row: dict, clips: list[Clip], anchor: str = "") -> str:
    """One sentence: its text and a table of players with their scores (`anchor`: the section's id, default `uid`)."""
    meta = " · ".join(html.escape(str(row[k])) for k in ("language", "speaker", "gender") if row.get(k))
    lines = [f'<section class="sample" id="{html.escape(anchor or uid)}">', f"<h3>{html.escape(uid)} <small>{meta}</small></h3>",
             f'<p class="text">{html.escape(str(row.get("text", "")))}</p>', "<table>",
             "<thead><tr><th>audio of</th><th>player</th><th>s</th><th>TTS judge heard</th><th>judge CER %</th>"
             "<th>SECS</th><th>MCD (dB)</th></tr></thead>", "<tbody>"]
    for c in clips:
        lines.append(f"<tr><td>{html.escape(c.source)}</td><td>{_audio(c)}</td><td>{_duration(c.path)}</td>"
                     f"<td>{html.escape(c.heard) if c.heard is not None else '–'}</td>"
                     f"<td>{_number(None if c.cer is None else 100 * c.cer, '.1f')}</td>"
                     f"<td>{_number(c.secs, '.3f')}</td><td>{_number(c.mcd, '.2f')}</td></tr>")
    lines += ["</tbody>", "</table>", "</section>"]
    return "\n".join(lines)


def tts_section(directory: Path, n: int, notes: list[str]) -> tuple[str, list[str]]:
    """The TTS listening section (or a note that there is nothing to listen to); returns (HTML, ids shown)."""
    systems_roots, judge_roots = search_roots(directory)
    decodes = load_tts_decodes(systems_roots, notes)
    if not decodes:
        notes.append(f"no TTS decode (decode_tts_*/results.jsonl) under {', '.join(map(str, systems_roots))}: no audio samples")
        return "", []
    if n == 0:
        return "", []
    attach_judges(decodes, judge_roots, notes)
    real_heard = reference_heard(decodes)
    clips = {uid: sample_clips(uid, decodes, real_heard) for uid in pick_utterances(decodes, n)}
    score_clips([c for sample in clips.values() for c in sample], notes)
    parts = [sample_html(uid, decodes[0].rows[uid], sample) for uid, sample in clips.items()]
    ids = list(clips)
    judges = sorted({str(t.judge.parent.name) for t in decodes if t.judge is not None})
    intro = (f"<p>{len(ids)} test sentence{'' if len(ids) == 1 else 's'} of {html.escape(decodes[0].path.name)}. TTS judge: "
             f"{html.escape(', '.join(judges) or 'none found')} (its CER per utterance); SECS (speaker similarity, higher is "
             "better) and MCD (lower is better) against the real recording, computed here with the scorers of "
             "<code>polyspeech score</code>.</p>")
    return "<h2>TTS samples</h2>\n" + intro + "\n" + "\n".join(parts), ids


def vocoder_bench_dir(directory: Path, given: Path | None) -> Path | None:
    """The `bench vocoder --wav-dir` folder the page plays: `given` (an error if it holds no vocoders.json), else a
    recipe dir's `exp/vocoders` where a run wrote one, else none."""
    from polyspeech_cli.vocoder.bench import VOCODERS_JSON

    if given is not None:
        if not (Path(given) / VOCODERS_JSON).is_file():
            raise PolyspeechError(f"--vocoders {given}: no {VOCODERS_JSON} there (write one with `polyspeech bench vocoder "
                                  f"--cuts CUTS --wav-dir {given}`)")
        return Path(given)
    found = Path(directory) / "exp" / "vocoders"
    return found if (found / VOCODERS_JSON).is_file() else None


def vocoder_section(wav_dir: Path, notes: list[str]) -> str:
    """The vocoders side by side: the same real sentences, each clip's own mel through every vocoder of a
    `bench vocoder` run (copy synthesis), with the clip's MCD and, where the bench had a judge, its transcript and CER."""
    import json

    from polyspeech_cli.vocoder.bench import VOCODERS_JSON

    r = json.loads((wav_dir / VOCODERS_JSON).read_text(encoding="utf-8"))
    parts = []
    for row in r["per_clip"]:
        clips = []
        for name, file in row["wav"].items():
            path = wav_dir / file
            cer = (row.get("cer") or {}).get(name)
            clips.append(Clip(name, path if path.is_file() else None, "its WAV is not on disk", heard=(row.get("heard") or {}).get(name),
                              cer=None if cer is None else cer / 100, mcd=row["mcd"].get(name)))
        missing = [c.source for c in clips if c.path is None]
        if missing:
            notes.append(f"{wav_dir}: {row['id']} has no audio of {', '.join(missing)}")
        parts.append(sample_html(row["id"], row, clips, anchor=f"vocoders-{row['id']}"))
    m = r["mel"]
    judge = f" ({html.escape(str(r['judge']))})" if r.get("judge") else ": none in this bench run"
    intro = (f"<p>The same {len(parts)} real sentence{'' if len(parts) == 1 else 's'} of <code>{html.escape(str(r['source']))}</code>, "
             f"each clip's own log-mel ({m['sample_rate']} Hz, hop {m['hop_length']}, {m['n_mels']} bands) turned back into "
             "a waveform by each vocoder (copy synthesis, <code>polyspeech bench vocoder</code>): what the vocoder alone "
             f"costs, heard side by side. MCD (dB) against the original; the judge{judge}.</p>")
    return "<h2>Vocoders side by side</h2>\n" + intro + "\n" + "\n".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 80em; margin: 2em auto; padding: 0 1em; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: middle; }
th { background: #f3f3f3; }
img { max-width: 100%; }
.notes { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 1em; }
.sample .text { font-size: 1.15em; font-style: italic; }
.missing { color: #a00; }
audio { height: 2.2em; }
"""


def build_page(directory: Path, n: int = DEFAULT_UTTS, vocoders: Path | None = None) -> tuple[str, list[str], list[str]]:
    """(the page's HTML, notes about what was left out, the TTS utterance ids shown); `vocoders`: a `bench vocoder
    --wav-dir` folder to play side by side (default: the recipe's exp/vocoders where there is one)."""
    if n < 0:
        raise PolyspeechError(f"--utts {n}: the number of TTS sentences must be >= 0")
    results = results_file(directory)
    notes: list[str] = []
    body, referenced = markdown_html(results.read_text(encoding="utf-8"), results.parent, notes)
    extra = sorted(p for p in results.parent.glob(f"{results.stem}_*.png") if p.name not in referenced)
    figures = "".join(f'\n<figure><img src="{data_uri(p)}" alt="{html.escape(p.name)}"><figcaption>{html.escape(p.name)}'
                      "</figcaption></figure>" for p in extra)
    samples, ids = tts_section(Path(directory), n, notes)
    bench = vocoder_bench_dir(directory, vocoders)
    if bench is not None:
        samples += "\n" + vocoder_section(bench, notes)
    notes = list(dict.fromkeys(notes))  # one line per missing piece, however many samples lack it
    notes_html = ("<div class=\"notes\"><strong>Left out of this page:</strong><ul>" +
                  "".join(f"<li>{html.escape(x)}</li>" for x in notes) + "</ul></div>\n") if notes else ""
    title = f"polyspeech results: {Path(directory).resolve().name}"
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{notes_html}{body}{figures}\n{samples}\n</body>\n</html>\n")
    return page, notes, ids


def write_report(directory: Path, out: Path | None = None, n: int = DEFAULT_UTTS, vocoders: Path | None = None) -> ReportPage:
    """Write the page (default: RESULTS.html beside RESULTS.md) atomically."""
    page, notes, ids = build_page(Path(directory), n, vocoders)
    out = Path(out) if out is not None else Path(directory) / "RESULTS.html"
    atomic_write_text(out, page)
    return ReportPage(out, notes, ids)
