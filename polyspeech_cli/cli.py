"""The `polyspeech` command line: one Typer app, each verb delegating to a stage module.

Heavy imports (torch, lhotse, transformers) happen inside the verbs, so `polyspeech --help`
stays fast.
"""

from __future__ import annotations

import typer

from polyspeech_cli import __version__
from polyspeech_cli.commands import codec, decode, evaluate, lm, prepare, report, score, tokens, vocoder


def _flags_show_no_type() -> None:
    """In the rich --help panel, a flag (`--help -h`, `--resume`, `--lanes/--no-lanes`) gets no
    `<bool>` in the type column: it takes no value. Typer's rich panel (typer 0.29) prints one for
    every option, unlike its own plain-text formatter, which already leaves flags and counters out;
    this gives the rich panel that rule. Options with a value keep their type (`<path>`, `<int>`)."""
    from typer.core import TyperOption

    show = getattr(TyperOption, "display_type_rich", None)
    if show is None or getattr(show, "_flags_show_no_type", False):  # an older typer (no type column), or done
        return

    def display_type_rich(self: TyperOption, ctx):  # type: ignore[no-untyped-def]
        if (getattr(self, "is_flag", False) or getattr(self, "count", False)) and self.metavar is None:
            return None
        return show(self, ctx)

    display_type_rich._flags_show_no_type = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()
app = typer.Typer(
    name="polyspeech",
    help="PolySpeech: one decoder-only multitask LM for ASR, TTS, LID and GID, with Kaldi/ESPnet-style recipes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
train_app = typer.Typer(help="Train models: the SSET codec, the multitask LM, the speech decoder, the n-gram LM.", no_args_is_help=True)

app.add_typer(prepare.app, name="prepare")
app.command("extract-tokens")(tokens.extract_tokens)
app.add_typer(train_app, name="train")
train_app.command("codec")(codec.train_codec)
train_app.command("lm")(lm.train_lm)
train_app.command("ngram")(lm.train_ngram)
train_app.command("vocoder")(vocoder.train_vocoder)
app.command("codec-eval")(codec.codec_eval)
app.command("vocoder-eval")(vocoder.vocoder_eval)
app.command("convert-hifigan")(vocoder.convert_hifigan)
app.add_typer(tokens.bench_app, name="bench")
app.command("decode")(decode.decode)
app.command("transcribe")(decode.transcribe)
app.command("synthesize")(decode.synthesize)
app.command("judge")(decode.judge)
tokens.bench_app.command("decode")(decode.bench_decode)
tokens.bench_app.command("train")(lm.bench_train)
tokens.bench_app.command("all")(lm.bench_all)
tokens.bench_app.command("vocoder")(vocoder.bench_vocoder)
app.command("score")(score.score)
app.command("pooled-baseline")(score.pooled_baseline)
app.command("compare")(score.compare)
app.command("budget-curves")(score.budget_curves)
app.command("split-scores")(score.split_scores)
app.command("compare-sources")(score.compare_sources)
app.command("peer-table")(score.peer_table)
app.command("dev-table")(score.dev_table)
app.command("evaluate")(evaluate.evaluate)
app.command("best-lm")(lm.best_lm)
app.command("report")(report.report)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"polyspeech {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """PolySpeech toolkit."""


def main() -> None:
    """Console-script entry point."""
    app()
