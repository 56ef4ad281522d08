"""Stage `evaluate`: a trained LM exp dir on any prepared cut set or `manifest.tsv` folder.

One job: orchestrate the stages that exist already, in the order a recipe would run them.

    --tsv DIR   prepare.py           DIR prepared as a test-only set into OUT/data, at the model's rate
    --cuts C    (resampled to the model's rate into OUT/data/input when its audio is at another rate)
    features    tokens/extract.py    fbank or HuBERT as EXP/features.json says (+ SSET tokens with the
                                     codec, for an LM that reads discrete tokens) -> OUT/data/<type>/
    decode      decode/run.py        every task the model knows and the set has labels for
                                     -> OUT/decode_<task>_<set>/ (TTS: + the judge's ASR of its audio)
    score       score/report.py      -> OUT/RESULTS.md, OUT/scores.json (+ RESULTS_confusion.png)

Every check that can fail on the user's input (the exp dir's files, the codec/vocoder, the judge,
`--tasks`, an empty set, a set without labels for any task) runs before anything is computed, and a
failed run removes what it created under OUT; each piece it keeps is whole and stamped, so a re-run
skips finished work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import CutSet

from polyspeech_cli.data.manifest import read_cuts
from polyspeech_cli.console import console
from polyspeech_cli.decode import lm_io
from polyspeech_cli.decode.options import ASR_LM_WEIGHT, DecodeOptions
from polyspeech_cli.decode.run import PromptTable, decode
from polyspeech_cli.decode.tts import SpeechBackend, find_codec, find_vocoder
from polyspeech_cli.errors import PolyspeechError, require_dir, require_file
from polyspeech_cli.fileio import atomic_path
from polyspeech_cli.lm.tasks import GENDERS, LABEL_NAMES, TASKS, check_task, reference, supervision
from polyspeech_cli.stamps import is_fresh, stamp_key, write_stamp

# ASR decoding: the settings egs/mini chose on its dev set (beam 4, joint CTC/attention weight 0.8;
# with an n-gram, beam 8 and its weight `ASR_LM_WEIGHT`); the CTC part only where the model has a CTC head.
ASR_BEAM_SIZE, ASR_BEAM_SIZE_NGRAM = 4, 8
ASR_CTC_WEIGHT = 0.8
FBANK_TYPES = ("fbank", "kaldi-fbank")  # both are Lhotse's Kaldi-compatible Fbank (extract-tokens --type fbank)
RESULTS_FILES = ("RESULTS.md", "scores.json", "RESULTS_confusion.png")


@dataclass
class EvaluateOptions:
    exp_dir: Path
    out_dir: Path
    cuts: Path | None = None  # a prepared cuts manifest ...
    tsv: Path | None = None  # ... or a folder with manifest.tsv (exactly one of the two)
    tasks: list[str] | None = None  # None: every task of the model that the set has labels for
    codec: Path | None = None  # TTS / token-input LMs: default EXP/../codec
    vocoder: Path | None = None  # TTS: default EXP/../vocoder
    asr_judge: Path | str | None = None  # an ASR LM exp dir, or whisper:DIR, that transcribes the synthesized audio (TTS CER)
    ngram: Path | None = None  # ASR: a character n-gram (`train ngram`) fused at `lm_weight` (decode --ngram)
    lm_weight: float = ASR_LM_WEIGHT


@dataclass
class FeaturePlan:
    """How the model's input is computed from audio (what its training cuts carried)."""

    type: str  # "fbank" or "hubert" (extract-tokens --type)
    dim: int
    sampling_rate: int
    frame_shift: float
    source: str  # where these settings come from (for messages and RESULTS.md)
    hubert_model: str | None = None
    hubert_layer: int | None = None
    sset_codec: Path | None = None  # then also SSET tokens with this codec (an LM on discrete tokens)

    def describe(self) -> str:
        model = f", {self.hubert_model} layer {self.hubert_layer}" if self.type == "hubert" else ""
        tokens = f", then SSET tokens of `{self.sset_codec}`" if self.sset_codec else ""
        return (f"{self.type}{model}, {self.dim} dims, {self.sampling_rate} Hz, {1000 * self.frame_shift:g} ms frames "
                f"(from {self.source}){tokens}")


@dataclass
class Plan:
    """Everything checked before any output is written."""

    lm: lm_io.LoadedLM
    tasks: list[str]  # candidate tasks: the model's, or --tasks
    explicit: bool  # --tasks given: a task that cannot run is an error, not a note
    features: FeaturePlan | None  # None: no task reads speech (TTS only)
    sampling_rate: int  # audio is resampled to this rate before features are computed
    codec: Path | None = None
    vocoder: Path | None = None
    judge: lm_io.LoadedLM | None = None
    whisper: object | None = None  # --asr-judge whisper:DIR (decode/whisper.py WhisperJudge), instead of `judge`
    ngram: Path | None = None  # ASR decodes (the judge's too): shallow fusion of this n-gram at `lm_weight`
    lm_weight: float = 0.0
    notes: list[str] = field(default_factory=list)


# ---- the stage ----------------------------------------------------------------------------------
def evaluate(opts: EvaluateOptions, log: Callable[..., None] = console.print) -> dict[str, dict]:
    """Evaluate the LM of `opts.exp_dir` on one set; returns the scores (as written to scores.json)."""
    from polyspeech_cli.score.report import write_results

    plan = make_plan(opts)
    out = Path(opts.out_dir)
    with _undo_on_error(out):
        cuts_path, name, origin = _input_set(opts, plan, log)
        cuts = _read_set(cuts_path)
        tasks, tts_targets = _select_tasks(cuts, cuts_path, plan)
        for note in plan.notes:
            log(f"[yellow]note:[/] {note}")
        for f in RESULTS_FILES:  # from here on, old results are being replaced: none until the new ones
            (out / f).unlink(missing_ok=True)
        log(f"[bold]evaluate[/] {opts.exp_dir} on {name} ({len(cuts)} cuts): {', '.join(tasks)}")
        decode_cuts = _features(cuts_path, plan, out / "data", log)
        decode_dirs = _decode_tasks(plan, tasks, decode_cuts, tts_targets, name, out, log)
        log("[bold]evaluate[/] score")
        scores = _score(decode_dirs, cuts, plan)
        write_results(scores, out / "RESULTS.md", notes=_notes(plan, name, origin, cuts, tasks, scores))
    log(f"wrote {out / 'RESULTS.md'} and {out / 'scores.json'}")
    return scores


def _decode_tasks(plan: Plan, tasks: list[str], cuts_path: Path, tts_targets: list[str], name: str, out: Path, log) -> dict[str, Path]:
    """`decode` of each task into OUT/decode_<task>_<set>/ (+ "judge": the judge's ASR of the TTS audio)."""
    dirs = {}
    for task in tasks:
        task_cuts = cuts_path if task != "tts" else _tts_manifest(cuts_path, tts_targets, out / "data" / "tts")
        log(f"[bold]evaluate[/] decode {task}")
        dirs[task] = decode(plan.lm.exp_dir, task_cuts, _decode_options(plan.lm, task, name, plan), log=log, out_root=out)
    if "tts" in dirs and plan.judge is not None:
        log(f"[bold]evaluate[/] TTS intelligibility: ASR of the synthesized audio by {plan.judge.exp_dir}")
        dirs["judge"] = decode(plan.judge.exp_dir, dirs["tts"] / "cuts.jsonl.gz", _decode_options(plan.judge, "asr", f"tts_{name}", plan),
                               log=log, out_root=out)
    if "tts" in dirs and plan.whisper is not None:
        from polyspeech_cli.decode.whisper import whisper_decode

        spec = plan.whisper.spec
        log(f"[bold]evaluate[/] TTS intelligibility: ASR of the synthesized audio by {plan.whisper.describe()}")
        dirs["judge"] = whisper_decode(spec, dirs["tts"] / "cuts.jsonl.gz", f"tts_{name}_whisper", out, log)
        # the same utterances' real audio: the judge's own error floor, printed beside its CER on the TTS audio
        dirs["judge_real"] = whisper_decode(spec, _tts_manifest(cuts_path, tts_targets, out / "data" / "tts"), f"real_{name}_whisper", out, log)
    return dirs


def _score(dirs: dict[str, Path], cuts: CutSet, plan: Plan) -> dict[str, dict]:
    """`polyspeech score`'s scorers over the decodes, with the notes on unknown labels and the judge's CER."""
    from polyspeech_cli.score.report import score_decodes

    scores = score_decodes([d for task, d in dirs.items() if task not in ("judge", "judge_real")])
    _add_label_notes(scores, cuts, plan)
    if "judge" in dirs:
        real = score_decodes([dirs["judge_real"]])[dirs["judge_real"].name] if "judge_real" in dirs else None
        label = plan.whisper.describe() if plan.whisper is not None else plan.judge.exp_dir
        _add_judge(scores[dirs["tts"].name], score_decodes([dirs["judge"]])[dirs["judge"].name], label, real)
    return scores


def make_plan(opts: EvaluateOptions) -> Plan:
    """Load and check the model, the task list, the features, the TTS back end and the judge."""
    if (opts.cuts is None) == (opts.tsv is None):
        raise PolyspeechError("give the set to evaluate: --cuts CUTS.jsonl.gz (a prepared cut set) or --tsv DIR (a folder with manifest.tsv), one of them")
    lm = lm_io.load_lm(Path(opts.exp_dir))
    explicit = opts.tasks is not None
    tasks = [check_task(t, "--tasks") for t in (opts.tasks if explicit else lm.tasks)]
    if explicit and not tasks:
        raise PolyspeechError("--tasks is empty: give a comma-separated subset of " + ", ".join(TASKS))
    for t in tasks:
        lm_io.require_task(lm, t)
    plan = Plan(lm, [t for t in TASKS if t in tasks], explicit, None, int(lm_io.DEFAULT_FEATURES["sampling_rate"]))
    if "tts" in plan.tasks:
        _check_tts_backend(plan, opts)
    if lm.speech_input == "tokens" and any(t != "tts" for t in plan.tasks):
        _check_token_input(plan, opts)
    if opts.ngram is not None:
        plan.ngram, plan.lm_weight = require_file(Path(opts.ngram), "n-gram LM", "train it with `polyspeech train ngram`"), opts.lm_weight
    if any(t != "tts" for t in plan.tasks):
        plan.features = _feature_plan(lm, plan.codec if lm.speech_input == "tokens" else None)
        plan.sampling_rate = plan.features.sampling_rate
    if opts.asr_judge is not None:
        from polyspeech_cli.decode.whisper import check_whisper, is_whisper

        if is_whisper(opts.asr_judge):
            plan.whisper = check_whisper(str(opts.asr_judge))  # loaded now: a missing package or model fails before any work
        else:
            plan.judge = _load_judge(Path(opts.asr_judge))
        if "tts" not in plan.tasks:
            plan.notes.append(f"--asr-judge {opts.asr_judge} is not used: TTS is not evaluated")
            plan.judge = plan.whisper = None
    return plan


def _check_tts_backend(plan: Plan, opts: EvaluateOptions) -> None:
    """Codec + speech decoder found and matching the LM (as `decode --task tts` finds them), and SECS
    scorable. Without --tasks a missing back end drops TTS with a note; with --tasks tts it is an error."""
    try:
        codec = find_codec(Path(opts.codec) if opts.codec else None, plan.lm.exp_dir)
        vocoder = find_vocoder(Path(opts.vocoder) if opts.vocoder else None, plan.lm.exp_dir)
        SpeechBackend(plan.lm, codec, vocoder)  # codebooks and feature dims checked against the LM
        if importlib.util.find_spec("resemblyzer") is None:
            raise PolyspeechError("TTS speaker similarity (SECS) needs resemblyzer: pip install -e '.[eval]'")
    except PolyspeechError as e:
        if plan.explicit or plan.tasks == ["tts"]:  # asked for, or nothing else to evaluate
            raise
        plan.tasks.remove("tts")
        plan.notes.append(f"tts is not evaluated: {e} (pass --codec/--vocoder, or --tasks without tts)")
        return
    plan.codec, plan.vocoder = codec, vocoder


def _check_token_input(plan: Plan, opts: EvaluateOptions) -> None:
    """An LM on discrete speech reads SSET tokens, made here with the codec (--codec or EXP/../codec)."""
    key = plan.lm.cfg.data.speech_tokens
    if key != "sset":
        raise PolyspeechError(f"the LM in {plan.lm.exp_dir} reads '{key}' tokens; evaluate computes SSET tokens only "
                              f"(extract '{key}' tokens with `polyspeech extract-tokens` and use `polyspeech decode`)")
    if plan.codec is None:
        plan.codec = find_codec(Path(opts.codec) if opts.codec else None, plan.lm.exp_dir)


def _feature_plan(lm: lm_io.LoadedLM, codec: Path | None) -> FeaturePlan:
    """What EXP/features.json says (train lm writes it from its training cuts); for an LM on SSET
    tokens, the features its codec was trained on."""
    path = lm.exp_dir / "features.json"
    if codec is not None and not path.is_file():
        from polyspeech_cli.codec.checkpoint import load_codec

        meta = load_codec(codec)[1]
        info = {"type": meta["feature_type"], "dim": int(meta["feat_dim"]), "frame_shift": float(meta["frame_shift"]),
                "sampling_rate": int(lm_io.DEFAULT_FEATURES["sampling_rate"])}
        source = f"the codec {codec}"
    elif not path.is_file() and lm.feat_dim not in (int(lm_io.DEFAULT_FEATURES["num_mel_bins"]), -1):
        raise PolyspeechError(f"{path} is missing and the LM reads {lm.feat_dim}-dim features, so they are not the default fbank: "
                              "write it ({\"type\": \"hubert\", \"dim\": ..., \"source\": MODEL, \"layer\": N, \"sampling_rate\": 16000, "
                              "\"frame_shift\": 0.02}, from the hubert.json beside the training features)")
    else:
        info = lm_io.feature_settings(lm, fbank_only=False)  # the fbank default when there is no features.json
        source = str(path) if path.is_file() else "the fbank default (no features.json)"
    kind = "fbank" if info["type"] in FBANK_TYPES else info["type"]
    plan = FeaturePlan(kind, int(info.get("dim", info.get("num_mel_bins", 0))), int(info.get("sampling_rate", 16000)),
                       float(info.get("frame_shift", 0.01)), source, sset_codec=codec)
    if kind == "hubert":
        plan.hubert_model, plan.hubert_layer = info.get("source") or info.get("model"), info.get("layer")
        if not plan.hubert_model or plan.hubert_layer is None:
            raise PolyspeechError(f"{path}: HuBERT features, but it does not say which model and layer made them: add "
                                  "\"source\" (model dir or hub id) and \"layer\" (copy them from the hubert.json beside the training features)")
    elif kind != "fbank":
        raise PolyspeechError(f"{path}: input features of type '{info['type']}'; evaluate computes fbank or hubert features only")
    if lm.feat_dim > 0 and codec is None and plan.dim != lm.feat_dim:
        raise PolyspeechError(f"{path}: says {plan.dim}-dim features, but the LM in {lm.exp_dir} reads {lm.feat_dim}-dim ones; fix features.json")
    return plan


def _load_judge(exp_dir: Path) -> lm_io.LoadedLM:
    """The --asr-judge: an ASR LM that computes its fbank from the synthesized audio itself."""
    judge = lm_io.load_lm(exp_dir)
    lm_io.require_task(judge, "asr")
    if judge.speech_input != "features":
        raise PolyspeechError(f"--asr-judge {exp_dir}: this LM reads discrete '{judge.cfg.data.speech_tokens}' tokens; the judge "
                              "transcribes synthesized audio, so it must be an LM on fbank features")
    lm_io.feature_settings(judge)  # fbank it can compute on the fly, or a one-line error now
    return judge


@contextlib.contextmanager
def _undo_on_error(out: Path) -> Iterator[None]:
    """On failure, remove what this run created under `out` (and `out` itself, with any parent dirs
    it made, if it is new): no half-finished evaluation is left. What was there before stays
    (whole, stamped work that a re-run reuses)."""
    top = Path(out).absolute()
    while not top.parent.exists():
        top = top.parent
    existed = top.exists()
    before = set(out.iterdir()) if out.is_dir() else set()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(top, ignore_errors=True)
        elif out.is_dir():
            for p in set(out.iterdir()) - before:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise


# ---- the set ------------------------------------------------------------------------------------
def set_name(cuts_path: Path) -> str:
    """`<corpus>_cuts_<split>.jsonl.gz` (Lhotse's naming, what prepare writes) -> `<corpus>_<split>`."""
    stem = Path(cuts_path).name.split(".")[0]
    return stem.replace("_cuts_", "_") if "_cuts_" in stem else stem


def _input_set(opts: EvaluateOptions, plan: Plan, log) -> tuple[Path, str, str]:
    """(cuts manifest at the model's rate, set name, where it came from)."""
    if opts.tsv is not None:
        from polyspeech_cli.data.manifests import manifest_path
        from polyspeech_cli.data.split import single_split_ratios
        from polyspeech_cli.prepare import PrepareOptions, prepare_tsv_corpus

        root = require_dir(Path(opts.tsv), "corpus directory", "pass --tsv a folder that holds manifest.tsv").resolve()
        name = root.name
        prep = PrepareOptions(Path(opts.out_dir) / "data", name, single_split_ratios("test"), plan.sampling_rate)
        prepare_tsv_corpus(root, prep)
        return manifest_path(prep.data_dir, name, "cuts", "test"), name, f"`{root}/manifest.tsv`, prepared as a test-only set"
    cuts_path = require_file(Path(opts.cuts), "cuts manifest", "pass --cuts a manifest from `polyspeech prepare` (or use --tsv DIR)")
    _require_lines(cuts_path)
    resampled = _resampled(cuts_path, plan.sampling_rate, Path(opts.out_dir) / "data" / "input", log)
    how = f", resampled to {plan.sampling_rate} Hz" if resampled != cuts_path else ""
    return resampled, set_name(cuts_path), f"`{cuts_path.resolve()}`{how}"


def _require_lines(path: Path) -> None:
    """An empty JSONL manifest is an empty set (Lhotse cannot even tell its type): say so."""
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            empty = not any(line.strip() for line in f)
    except (OSError, UnicodeDecodeError, EOFError):
        return  # not JSONL text: read_cuts says what is wrong
    if empty:
        raise PolyspeechError(f"{path}: holds no cuts (an empty set); pass a prepared set with utterances")


def _read_set(cuts_path: Path) -> CutSet:
    """The set, lazily (every use streams the file again): checked in one pass."""
    cuts = read_cuts(cuts_path, fix="pass a prepared set with utterances")
    for c in cuts:  # features are computed from audio, TTS prompts and SECS references are audio
        if not c.has_recording:
            raise PolyspeechError(f"{cuts_path}: cut '{c.id}' has no audio (recording); evaluate computes the model's features "
                                  "from audio: pass a manifest from `polyspeech prepare`")
    return cuts


def _write_derived(path: Path, cuts: Callable[[], Iterator], key: dict) -> Path:
    """Write a manifest derived from another one (`cuts()`: an iterator of its cuts, streamed to the
    file), unless its stamp says it is there already (so the stages reading it see an unchanged file
    and skip their finished work)."""
    stamp = path.parent / f".{path.name.split('.')[0]}.evaluate.json"
    if not is_fresh(stamp, key):
        with atomic_path(path) as tmp, CutSet.open_writer(tmp) as writer:
            for c in cuts():
                writer.write(c)
        write_stamp(stamp, key, [path])
    return path


def _resampled(cuts_path: Path, rate: int, out_dir: Path, log) -> Path:
    """`cuts_path` itself when every cut is at `rate`, else a copy resampled lazily (in the manifest)."""
    cuts = read_cuts(cuts_path)
    if all(c.sampling_rate == rate for c in cuts if c.has_recording):
        return cuts_path
    log(f"{cuts_path}: resampling to {rate} Hz, the model's rate")
    out = lambda: (c.resample(rate) if c.has_recording and c.sampling_rate != rate else c for c in cuts)  # noqa: E731
    return _write_derived(out_dir / cuts_path.name, out, stamp_key({"resample": rate}, [cuts_path]))


# ---- tasks --------------------------------------------------------------------------------------
def _select_tasks(cuts: CutSet, cuts_path: Path, plan: Plan) -> tuple[list[str], list[str]]:
    """The tasks the set has labels for, and the TTS targets (ids); what is left out gets a note."""
    tasks = []
    tts_targets: list[str] = []
    for task in plan.tasks:
        n = sum(reference(c, task) is not None for c in cuts)
        if task == "tts" and n:
            tts_targets = _tts_targets(cuts, plan)
            n = len(tts_targets)
        if n:
            tasks.append(task)
            continue
        why = "no cut has " + LABEL_NAMES[task] if task != "tts" else "no cut has text in a language the model knows and another utterance (>= 1 s) of its speaker to prompt with"
        if plan.explicit:
            raise PolyspeechError(f"{cuts_path}: --tasks {task}: {why}; add that label to the set or leave {task} out of --tasks")
        plan.notes.append(f"{task} is not evaluated: {why}")
    if not tasks:
        raise PolyspeechError(f"{cuts_path}: no cut carries labels for any task of the model ({', '.join(plan.tasks) or 'none left'}): asr needs "
                              "text, lid a language, gid a gender (M/F), tts text and another utterance of the speaker; "
                              "add them (the manifest.tsv columns text, language, gender) or evaluate another set")
    return tasks, tts_targets


def _tts_targets(cuts: CutSet, plan: Plan) -> list[str]:
    """Cuts TTS can synthesize: text, a language the model knows (it reads a language token), and a
    prompt, i.e. another utterance of the same speaker (decode's own rule, `pick_prompts`)."""
    vocab, cfg = plan.lm.vocab, plan.lm.cfg.data
    prompts = PromptTable(cuts)  # one streaming pass: each speaker's two longest cuts
    targets, unknown, no_prompt = [], Counter(), 0
    for c in cuts:
        s = supervision(c)
        if reference(c, "tts") is None:
            continue
        if (s.language is None and cfg.tts_language_token) or (s.language is not None and s.language not in vocab.languages):
            unknown[s.language or "none"] += 1
            continue
        try:
            prompts.prompt(c)
        except PolyspeechError:
            no_prompt += 1
            continue
        targets.append(c.id)
    if unknown:
        plan.notes.append("tts leaves out " + ", ".join(f"{n} utterance(s) in '{lang}'" for lang, n in sorted(unknown.items()))
                          + f": the model synthesizes only {', '.join(vocab.languages)}")
    if no_prompt:
        plan.notes.append(f"tts leaves out {no_prompt} utterance(s) whose speaker has no other utterance (>= 1 s) to prompt with")
    return targets


def _tts_manifest(cuts_path: Path, targets: list[str], out_dir: Path) -> Path:
    """The TTS view of the set: only `targets` keep their text (decode synthesizes every cut with text);
    the others stay in, without text, as candidate speaker prompts."""
    cuts = read_cuts(cuts_path)
    keep = set(targets)
    if all(c.id in keep for c in cuts if reference(c, "tts") is not None):
        return cuts_path
    from lhotse.utils import fastcopy

    view = lambda: (c if c.id in keep or not c.supervisions else  # noqa: E731
                    fastcopy(c, supervisions=[dataclasses.replace(c.supervisions[0], text=None), *c.supervisions[1:]]) for c in cuts)
    return _write_derived(out_dir / cuts_path.name, view, stamp_key({"tts_targets": sorted(keep)}, [cuts_path]))


def _decode_options(lm: lm_io.LoadedLM, task: str, name: str, plan: Plan) -> DecodeOptions:
    opts = DecodeOptions(task=task, set_name=name)
    if task == "asr":
        opts.beam_size = ASR_BEAM_SIZE
        opts.ctc_weight = ASR_CTC_WEIGHT if lm.model.ctc_head is not None else 0.0
        if plan.ngram is not None and opts.ctc_weight > 0:  # fusion runs in the joint beam search only
            opts.ngram, opts.lm_weight, opts.beam_size = str(plan.ngram), plan.lm_weight, ASR_BEAM_SIZE_NGRAM
    if task == "tts":
        opts.codec, opts.vocoder = str(plan.codec), str(plan.vocoder)
    return opts


# ---- features -----------------------------------------------------------------------------------
def _features(cuts_path: Path, plan: Plan, data_dir: Path, log) -> Path:
    """The set with the model's input features (+ SSET tokens): extract-tokens' own code and stamps."""
    if plan.features is None:
        return cuts_path
    from polyspeech_cli.tokens.extract import ExtractOptions, extract_manifest, make_extractor, model_files

    f = plan.features
    log(f"[bold]evaluate[/] features: {f.describe()}")
    opts = ExtractOptions(type=f.type, out_dir=data_dir / f.type, model=f.hubert_model, layer=int(f.hubert_layer or 0),
                          num_mel_bins=f.dim)
    ext = make_extractor(opts)
    if abs(ext.frame_shift - f.frame_shift) > 1e-6:
        raise PolyspeechError(f"{f.source}: frame shift {f.frame_shift} s, but `extract-tokens --type {f.type}` computes "
                              f"{ext.frame_shift} s frames; these features cannot be reproduced")
    dim = int(ext.info().get("dim") or f.dim)
    if dim != f.dim:
        raise PolyspeechError(f"{f.source}: {f.dim}-dim features, but {f.hubert_model} layer {f.hubert_layer} gives {dim}")
    path = extract_manifest(cuts_path, ext, Path(opts.out_dir), first=True, files=model_files(opts, ext))
    if f.sset_codec is not None:
        opts = ExtractOptions(type="sset", out_dir=data_dir / "sset", checkpoint=f.sset_codec)
        ext = make_extractor(opts)
        path = extract_manifest(path, ext, Path(opts.out_dir), first=True, files=model_files(opts, ext))
    return path


# ---- the report ---------------------------------------------------------------------------------
def _add_label_notes(scores: dict[str, dict], cuts: CutSet, plan: Plan) -> None:
    """Languages (genders) of the set that the model has no class for: LID cannot answer them, so they
    count as errors; say so in scores.json and RESULTS.md instead of leaving a puzzling accuracy."""
    known = set(plan.lm.vocab.languages)
    unknown = Counter(s.language for c in cuts if (s := supervision(c)) is not None and s.language and s.language not in known)
    for name, s in scores.items():
        if s["task"] == "lid":
            s["unknown_languages"] = dict(sorted(unknown.items()))
            if unknown:
                s["markdown"] += (f"\nLanguages the model was not trained on: {', '.join(f'{k} ({n} utts)' for k, n in sorted(unknown.items()))}; "
                                  f"it knows {', '.join(sorted(known))}, so each of these utterances counts as an LID error.\n")
        elif s["task"] == "asr" and unknown:
            s["markdown"] += f"\nLanguages the model was not trained on: {', '.join(sorted(unknown))} (expect a high error rate there).\n"


def _add_judge(tts: dict, judged: dict, judge_dir: Path | str, real: dict | None = None) -> None:
    """The judge's CER on the synthesized audio, under the TTS entry (scores.json keeps one ASR entry,
    the model's own, as `polyspeech compare` expects); `real`: the judge's scores on the same
    utterances' real audio (the Whisper judge), printed beside it."""
    tts["tts_cer"], tts["asr_judge"] = judged["cer"], str(judge_dir)
    tts["markdown"] += f"\n### TTS intelligibility: ASR of the synthesized audio by `{judge_dir}`\n\n{judged['markdown']}"
    if real is not None:
        tts["judge_real_cer"] = real["cer"]
        tts["markdown"] += (f"\nThe judge's CER on the real audio of the same utterances: {100 * real['cer']['all']:.1f}% "
                            f"(on the synthesized audio: {100 * judged['cer']['all']:.1f}%).\n\n{real['markdown']}")


def _notes(plan: Plan, name: str, origin: str, cuts: CutSet, tasks: list[str], scores: dict) -> str:
    lm = plan.lm
    langs = Counter(s.language or "?" for c in cuts if (s := supervision(c)) is not None)
    genders = Counter(s.gender if s.gender in GENDERS else "?" for c in cuts if (s := supervision(c)) is not None)
    hours = sum(c.duration for c in cuts) / 3600
    lines = [
        "## Evaluation", "",
        f"- model: `{lm.exp_dir}` (checkpoint `{lm.checkpoint.name}`), trained for {', '.join(lm.tasks)}; languages {', '.join(lm.vocab.languages)}",
        f"- set `{name}`: {origin}; {len(cuts)} utterances, {hours:.3f} h; languages "
        + ", ".join(f"{k} {n}" for k, n in sorted(langs.items())) + "; genders " + ", ".join(f"{k} {n}" for k, n in sorted(genders.items())),
    ]
    if plan.features is not None:
        lines.append(f"- input features: {plan.features.describe()}")
    for name_, s in scores.items():
        lines.append(f"- {s['task']}: `{name_}/`")
    if "tts" in tasks:
        lines.append(f"- tts back end: codec `{plan.codec}`, speech decoder `{plan.vocoder}`; prompt: another utterance of the same speaker")
    if "asr" in tasks:
        lines.append(f"- asr decoding: beam {ASR_BEAM_SIZE}, CTC weight {ASR_CTC_WEIGHT if lm.model.ctc_head is not None else 0.0}")
    lines += [f"- note: {n}" for n in plan.notes]
    return "\n".join(lines) + "\n"
