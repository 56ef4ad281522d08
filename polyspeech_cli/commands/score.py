"""`polyspeech score`: CER/WER, accuracy, SECS into RESULTS.md."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from polyspeech_cli.commands import cli_command, console
from polyspeech_cli.score.budget_curves import DEFAULT_TARGETS


@cli_command
def score(
    decode_dirs: Annotated[list[Path], typer.Argument(help="decode_<task>_<set>/ directories holding results.jsonl.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="RESULTS.md to write (default: beside the first decode dir).")] = None,
) -> None:
    """Score decoding outputs (CER/WER per language, LID/GID accuracy, TTS SECS) into RESULTS.md."""
    from polyspeech_cli.score.report import score_dirs

    out = out or Path(decode_dirs[0]).resolve().parent / "RESULTS.md"
    scores = score_dirs(decode_dirs, out, log=console.print)
    for name, s in scores.items():
        if s["task"] == "asr":
            console.print(f"{name}: CER {100 * s['cer']['all']:.1f}%  WER {100 * s['wer']['all']:.1f}%")
        elif s["task"] == "tts":
            console.print(f"{name}: SECS {s['secs']:.3f} (different speakers: {s['secs_between_speakers']:.3f})")
        else:
            console.print(f"{name}: accuracy {100 * s['accuracy']:.1f}%")
    console.print(f"wrote {out}")


@cli_command
def pooled_baseline(
    train_cuts: Annotated[Path, typer.Option("--train-cuts", help="Cuts with features (and language/gender) to fit on.")],
    cuts: Annotated[Path, typer.Option("--cuts", help="Cuts with features to score, e.g. the test set.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="scores.json to write (the format of `score`; `compare --reference` reads it).")],
    tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated class tasks.")] = "lid,gid",
) -> None:
    """The linear floor of LID/GID: logistic regression on each utterance's mean and std of its features."""
    from polyspeech_cli.score.pooled_baseline import write_baseline

    for name, s in write_baseline(train_cuts, cuts, [t for t in tasks.split(",") if t], out).items():
        console.print(f"{name}: accuracy {100 * s['accuracy']:.1f}% (pooled-feature logistic regression)")
    console.print(f"wrote {out}")


@cli_command
def compare(
    systems: Annotated[list[str], typer.Argument(help="LABEL=path/to/scores.json, e.g. single-task=exp/single/scores.json multitask=exp/lm_multi/scores.json")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Markdown file to write the table to (PNGs go beside it).")] = Path("RESULTS.md"),
    title: Annotated[str, typer.Option("--title", help="Heading above the table.")] = "Single-task vs multitask",
    lm_dirs: Annotated[Optional[list[Path]], typer.Option("--lm-dir", help="LM exp dir whose training budget and curves to report (repeatable).")] = None,
    notes: Annotated[Optional[Path], typer.Option("--notes", help="Markdown appended at the end (e.g. what limits the numbers).")] = None,
    reference: Annotated[Optional[list[str]], typer.Option("--reference", help="LABEL=scores.json of a reference that is not a system "
                                                                                "(e.g. real tokens resynthesized), shown in its own table (repeatable).")] = None,
    tts_asr: Annotated[Optional[list[str]], typer.Option("--tts-asr", help="LABEL=DECODE_DIR (or scores.json): the ASR decode of system/reference "
                                                                           "LABEL's synthesized audio, its TTS CER (repeatable).")] = None,
    bars: Annotated[Optional[Path], typer.Option("--bars", help="YAML of the recipe's quality bars (e.g. egs/mini/conf/quality_bars.yaml); "
                                                               "without it there is no bar table.")] = None,
    tts_judge: Annotated[Optional[str], typer.Option("--tts-judge", help="LABEL of the system whose ASR model made the --tts-asr "
                                                                         "decodes: its own test CER is printed beside the TTS CER.")] = None,
    waterfall: Annotated[Optional[list[str]], typer.Option("--waterfall", help="LABEL=DECODE_DIR: one row of the TTS back end's loss "
                                                                           "waterfall, the judge's ASR decode of that row's audio; the "
                                                                           "first is the real audio (repeatable, in order).")] = None,
    budget_rule: Annotated[Optional[str], typer.Option("--budget-rule", help="A sentence under the training-budget table: how the "
                                                                             "recipe shares its compute between the systems.")] = None,
) -> None:
    """The paper's table (ASR CER, TTS SECS, TTS CER, LID and GID accuracy, one column per system),
    with --bars the quality bars, the LID/GID confusion matrices and, with --lm-dir, training budgets and curves."""
    from polyspeech_cli.errors import PolyspeechError
    from polyspeech_cli.score.results_page import ResultsPage, write_results_page

    def labelled(specs: list[str], option: str, example: str) -> dict[str, Path]:
        pairs = [s.partition("=") for s in specs]
        if any(not label or not path for label, _, path in pairs):
            raise PolyspeechError(f"each {option} is LABEL=PATH (e.g. {example})")
        return {label: Path(path) for label, _, path in pairs}

    table = write_results_page(ResultsPage(
        systems=labelled(systems, "system", "multitask=exp/lm_multi/scores.json"), out=out, title=title,
        references=labelled(reference or [], "--reference", "resynth=exp/resynth/scores.json"),
        tts_asr=labelled(tts_asr or [], "--tts-asr", "multitask=exp/lm_asr/decode_asr_tts_multi"), tts_judge=tts_judge,
        bars=bars, lm_dirs=list(lm_dirs or []), budget_rule=budget_rule, notes=notes,
        waterfall=labelled(waterfall or [], "--waterfall", "real audio=exp/lm_asr/decode_asr_test")))
    console.print(table)
    console.print(f"wrote {out}")


@cli_command
def budget_curves(
    runs: Annotated[list[str], typer.Argument(help="BUDGET=EXP_DIR of each run of one recipe, e.g. 1=../run1/egs/mini/exp 4=exp "
                                                   "(lm_multi/, lm_<task>/ and stage 6's scores in each).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG of the dev curves to write.")],
    md: Annotated[Optional[Path], typer.Option("--md", help="Markdown section to write: the figure and the extrapolation table "
                                                            "(`compare --notes` takes it).")] = None,
    targets: Annotated[str, typer.Option("--targets", help="KEY=T or KEY=T_SINGLE,T_MULTI: ASR CER % per language ('all': "
                                                           "overall), LID/GID accuracy % ('lid', 'gid').")] = DEFAULT_TARGETS,
) -> None:
    """Runs at different --budget side by side: every LM's dev curves against training minutes, and the budget each
    test target would need (error ∝ budget^-a through the smallest and largest budget's test scores)."""
    from polyspeech_cli.fileio import atomic_write_text
    from polyspeech_cli.score.budget_curves import parse_runs, write_budget_section

    section = write_budget_section(parse_runs(runs), out, targets)
    if md is not None:
        atomic_write_text(md, section)
    console.print(section, highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {out}" + (f" and {md}" if md else ""), highlight=False)


@cli_command
def split_scores(
    score_dir: Annotated[Path, typer.Option("--score-dir", help="Reads SCORE_DIR/all/<system>/scores.json, writes SCORE_DIR/<source>/<system>/scores.json.")],
    sources: Annotated[str, typer.Option("--sources", help="Space-separated source names: the decode dirs end in _<source>.")],
    systems: Annotated[str, typer.Option("--systems", help="Space-separated systems under SCORE_DIR/all/.")] = "multi single resynth",
    line: Annotated[str, typer.Option("--line", help="SYSTEM:DECODE_NAME of the TTS score over all voices: its SECS between "
                                                     "different speakers goes into each source's TTS entry.")] = "",
) -> None:
    """Split each system's scores.json (one `score` call over every source's decode dirs) into one per source."""
    from polyspeech_cli.score.by_source import split_scores as run

    console.print(run(score_dir, sources.split(), systems.split(), line))


@cli_command
def compare_sources(
    sources: Annotated[str, typer.Option("--sources", help="Space-separated source names, in the page's order.")],
    score_dir: Annotated[Path, typer.Option("--score-dir", help="SCORE_DIR/<source>/compare.md (`compare` per source) and its scores.json files.")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The prepared <source>_cuts_<split>.jsonl.gz: the splits table.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="RESULTS.md to write (PNGs beside it).")] = Path("RESULTS.md"),
    title: Annotated[str, typer.Option("--title", help="The page's first heading.")] = "RESULTS",
    line_note: Annotated[str, typer.Option("--line-note", help="What the `TTS SECS, different real speakers` line is measured on.")]
        = "SECS between the real test audio of different voices",
    judge_dir: Annotated[Optional[Path], typer.Option("--judge-dir", help="The TTS judge's per-source ASR decodes of TTS audio.")] = None,
    judge: Annotated[str, typer.Option("--judge", help="Label of the judge system (single-task / multitask).")] = "",
    mini_dir: Annotated[Optional[Path], typer.Option("--mini-dir", help="`evaluate` outputs of another model, one dir per source.")] = None,
    mini_exp: Annotated[str, typer.Option("--mini-exp", help="That model's exp dir (named on the page).")] = "",
    header: Annotated[Optional[Path], typer.Option("--header", help="Markdown put after the environment.")] = None,
    section: Annotated[Optional[list[Path]], typer.Option("--section", help="A markdown file put before the notes as its own section (repeatable).")] = None,
    notes: Annotated[Optional[Path], typer.Option("--notes", help="Markdown appended at the end.")] = None,
) -> None:
    """One RESULTS.md of several sources scored one by one: splits, every source side by side, a section per source
    (its `compare` page), the training budgets and curves once; nothing averaged over sources."""
    from polyspeech_cli.score.by_source import SourcesPage, write_sources_page

    console.print(write_sources_page(SourcesPage(
        sources=sources.split(), score_dir=score_dir, data_dir=data_dir, out=out, title=title, line_note=line_note,
        judge_dir=judge_dir, judge=judge, mini_dir=mini_dir, mini_exp=mini_exp, header=header, sections=list(section or []), notes=notes)))


@cli_command
def peer_table(
    peer_summary: Annotated[Path, typer.Option("--peer-summary", help="The ESPnet peer's decode_test/summary.json (its params, train_min, test_utts, CER, CER_nospace, WER).")],
    ours_decode: Annotated[Path, typer.Option("--ours-decode", help="Our ASR decode dir (results.jsonl) of the same test speakers.")],
    ours_exp: Annotated[Path, typer.Option("--ours-exp", help="Our LM exp dir: train_log.csv and model.safetensors (its parameters).")],
    ours_train_seconds: Annotated[Path, typer.Option("--ours-train-seconds", help="File holding the seconds the whole `train lm` command took.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Markdown section to write (`compare-sources --section` takes it).")],
    train_desc: Annotated[str, typer.Option("--train-desc", help="The shared training data, in words (speakers, utterances).")] = "",
    ours_desc: Annotated[str, typer.Option("--ours-desc", help="Our system, in words (config, steps, decode options).")] = "",
    score_out: Annotated[Optional[Path], typer.Option("--score-out", help="JSON of our row's numbers (jiwer scores, minutes, steps, params).")] = None,
    title: Annotated[Optional[str], typer.Option("--title", help="The section's heading (default: egs/real stage 8's).")] = None,
    setup: Annotated[Optional[str], typer.Option("--setup", help="How the two ran and what they decode, in words (default: egs/real stage 8's).")] = None,
) -> None:
    """The table of egs/real stage 8 and egs/mini stage 7: the ESPnet peer vs our single-task ASR LM, both scored with jiwer
    on the same references."""
    from polyspeech_cli.score.peer import PeerTable, write_peer_table

    words = {k: v for k, v in (("title", title), ("setup", setup)) if v}
    table = write_peer_table(PeerTable(peer_summary=peer_summary, ours_decode=ours_decode, ours_exp=ours_exp,
                                       ours_train_seconds=ours_train_seconds, out=out, train_desc=train_desc,
                                       ours_desc=ours_desc, score_out=score_out, **words))
    console.print(table, markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {out}")


@cli_command
def dev_table(
    task: Annotated[str, typer.Argument(help="asr or gid: which dev decode (decode_asr_so_dev / decode_gid_dev) and columns.")],
    exp_dir: Annotated[Path, typer.Argument(help="The sweep's exp dir, one lm_<variant>/ per variant (scores.json, train_log.csv).")],
    train_set: Annotated[str, typer.Argument(help="The sweep's --train-set, named in the heading.")],
    steps: Annotated[str, typer.Argument(help="The sweep's step budget, named in the heading.")],
    table: Annotated[Path, typer.Argument(help="Markdown file to write.")],
    variants: Annotated[list[str], typer.Argument(help="Variants in table order (an unfinished one gets a `(not run)` row).")],
) -> None:
    """The table of an egs/real `local/dev_check.sh` sweep: each variant's dev scores and training log."""
    from polyspeech_cli.score.dev_sweep import write_dev_table

    console.print(write_dev_table(task, exp_dir, train_set, steps, table, variants), markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {table}")
