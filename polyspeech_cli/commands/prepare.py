"""`polyspeech prepare SOURCE`: corpora → Lhotse manifests (`<corpus>_{recordings,supervisions,cuts}_<split>.jsonl.gz`)."""


from pathlib import Path
from typing import Annotated, Optional

import typer

from polyspeech_cli.commands import cli_command

app = typer.Typer(help="Prepare a corpus into Lhotse manifests under a data dir.", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option("--data-dir", "-d", help="Where the manifests are written.")]
Corpus = Annotated[Optional[str], typer.Option("--corpus", help="Manifest name prefix (default: the source's name).")]
Ratios = Annotated[Optional[str], typer.Option("--split-ratios", help="train,dev,test fractions for corpora without their own split, "
                                                "each >= 0 (default 0.8,0.1,0.1; 0,0,1: a test-only set).")]
Split = Annotated[Optional[str], typer.Option("--split", help="Put the whole corpus into this one split (train, dev or test), as it is "
                                              "(no shuffle): --split test = --split-ratios 0,0,1, a set to evaluate a model on.")]
DEFAULT_RATIOS = "0.8,0.1,0.1"
Rate = Annotated[int, typer.Option("--sample-rate", help="Resample to this rate (lazily, in the manifest); 0 keeps the files' rates.")]
TextNorm = Annotated[str, typer.Option("--text-norm", help="none | nfkc | asr (NFKC, case-folded, no punctuation).")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="Drop bad utterances (and report how many) instead of stopping.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the train/dev/test split.")]
MinSpk = Annotated[int, typer.Option("--min-speakers", help="Speaker-disjoint dev/test only with at least this many speakers.")]
AudioCheck = Annotated[str, typer.Option("--audio-check", help="full: decode every file (catches corrupt audio); header: read headers only.")]
Force = Annotated[bool, typer.Option("--force", help="Prepare again even if the manifests are up to date.")]
Download = Annotated[bool, typer.Option("--download", help="Download the corpus into CORPUS_DIR first (needs internet).")]


def _ratios(split_ratios: Optional[str], split: Optional[str]) -> str | tuple[float, float, float]:
    """--split-ratios, or the ratios --split stands for (not both)."""
    from polyspeech_cli.data.split import single_split_ratios
    from polyspeech_cli.errors import PolyspeechError

    if split is None:
        return split_ratios or DEFAULT_RATIOS
    if split_ratios is not None:
        raise PolyspeechError(f"--split {split} and --split-ratios {split_ratios}: give one of them")
    return single_split_ratios(split)


def _options(data_dir, corpus, split_ratios, sample_rate, text_norm, skip_bad, seed, min_speakers, audio_check, force):
    """`split_ratios`: the --split-ratios text, or ratios already resolved (`_ratios`)."""
    from polyspeech_cli.data.sources import AUDIO_CHECKS
    from polyspeech_cli.data.split import parse_ratios
    from polyspeech_cli.data.text import TEXT_NORMS
    from polyspeech_cli.errors import PolyspeechError
    from polyspeech_cli.prepare import PrepareOptions

    if text_norm not in TEXT_NORMS:
        raise PolyspeechError(f"--text-norm '{text_norm}': choose one of {', '.join(TEXT_NORMS)}")
    if audio_check not in AUDIO_CHECKS:
        raise PolyspeechError(f"--audio-check '{audio_check}': choose one of {', '.join(AUDIO_CHECKS)}")
    if sample_rate < 0:
        raise PolyspeechError(f"--sample-rate {sample_rate}: must be a positive rate in Hz, or 0 to keep the files' rates")
    ratios = parse_ratios(split_ratios) if isinstance(split_ratios, str) else split_ratios
    return PrepareOptions(Path(data_dir), corpus, ratios, sample_rate, text_norm, skip_bad, seed, min_speakers, audio_check, force)


@app.command("synth")
@cli_command
def synth(
    corpus_dir: Annotated[Path, typer.Option("--corpus-dir", help="Where the generated audio is written.")] = Path("corpus/synth"),
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML with SynthConfig keys (e.g. conf/synth.yaml).")] = None,
    train_utts: Annotated[Optional[int], typer.Option("--train-utts", help="Training utterances per language.")] = None,
    dev_utts: Annotated[Optional[int], typer.Option("--dev-utts", help="Dev utterances per language.")] = None,
    test_utts: Annotated[Optional[int], typer.Option("--test-utts", help="Test utterances per language.")] = None,
    languages: Annotated[Optional[str], typer.Option("--languages", help="Comma-separated ISO 639-1 codes.")] = None,
    synth_seed: Annotated[Optional[int], typer.Option("--synth-seed", help="Seed of the generated corpus.")] = None,
    data_dir: DataDir = Path("data"),
    corpus: Corpus = None,
    text_norm: TextNorm = "asr",
    skip_bad: SkipBad = False,
    force: Force = False,
) -> None:
    """Generate the embedded multilingual eSpeak NG corpus (offline) and prepare it.

    Manifests store absolute audio paths (here and for every source), so they work from any directory.
    """
    import dataclasses

    from polyspeech_cli.config import from_dict, load_config
    from polyspeech_cli.data.synth import SynthConfig, generate_synth, synth_input_files
    from polyspeech_cli.prepare import run_prepare

    overrides = {
        "train_utts_per_language": train_utts,
        "dev_utts_per_language": dev_utts,
        "test_utts_per_language": test_utts,
        "languages": languages.split(",") if languages else None,
        "seed": synth_seed,
    }
    cfg = load_config(config, SynthConfig, overrides) if config else from_dict(SynthConfig, {k: v for k, v in overrides.items() if v is not None}, "options")
    opts = _options(data_dir, corpus or "synth", "1,0,0", cfg.sample_rate, text_norm, skip_bad, 0, 1, "header", force)
    root = Path(corpus_dir).resolve()
    run_prepare("synth", lambda bad: generate_synth(root, cfg), opts, {"corpus_dir": root, **dataclasses.asdict(cfg)}, synth_input_files(root))


@app.command("tsv")
@cli_command
def tsv(
    corpus_dir: Annotated[Path, typer.Argument(help="Folder with manifest.tsv (utt_id path speaker gender language duration text).")],
    data_dir: DataDir = Path("data"),
    corpus: Corpus = None,
    split_ratios: Ratios = None,
    split: Split = None,
    sample_rate: Rate = 16000,
    text_norm: TextNorm = "asr",
    skip_bad: SkipBad = False,
    seed: Seed = 0,
    min_speakers: MinSpk = 6,
    audio_check: AudioCheck = "full",
    force: Force = False,
) -> None:
    """Prepare a folder in the manifest.tsv format ("bring your own data")."""
    from polyspeech_cli.prepare import prepare_tsv_corpus

    opts = _options(data_dir, corpus or Path(corpus_dir).resolve().name, _ratios(split_ratios, split), sample_rate, text_norm, skip_bad,
                    seed, min_speakers, audio_check, force)
    prepare_tsv_corpus(corpus_dir, opts)


@app.command("kaldi")
@cli_command
def kaldi(
    kaldi_dir: Annotated[Path, typer.Argument(help="Kaldi data dir: wav.scp, text, utt2spk; optional segments, spk2gender, utt2lang.")],
    language: Annotated[Optional[str], typer.Option("--language", help="ISO 639-1 code of every utterance (when there is no utt2lang).")] = None,
    data_dir: DataDir = Path("data"),
    corpus: Corpus = None,
    split_ratios: Ratios = None,
    split: Split = None,
    sample_rate: Rate = 16000,
    text_norm: TextNorm = "asr",
    skip_bad: SkipBad = False,
    seed: Seed = 0,
    min_speakers: MinSpk = 6,
    audio_check: AudioCheck = "full",
    force: Force = False,
) -> None:
    """Prepare a Kaldi data directory."""
    from polyspeech_cli.data.kaldi import kaldi_input_files, prepare_kaldi
    from polyspeech_cli.prepare import run_prepare

    opts = _options(data_dir, corpus or Path(kaldi_dir).resolve().name, _ratios(split_ratios, split), sample_rate, text_norm, skip_bad, seed, min_speakers, audio_check, force)
    root = Path(kaldi_dir).resolve()
    run_prepare("kaldi", lambda bad: prepare_kaldi(root, bad, language, audio_check), opts, {"kaldi_dir": root, "language": language},
                kaldi_input_files(root))


def _lhotse_command(name: str, subset_help: str):
    def command(
        corpus_dir: Annotated[Path, typer.Argument(help=f"Where {name} is unpacked (or is downloaded to, with --download).")],
        download: Download = False,
        subset: Annotated[str, typer.Option("--subset", help=subset_help)] = "auto",
        data_dir: DataDir = Path("data"),
        corpus: Corpus = None,
        sample_rate: Rate = 16000,
        text_norm: TextNorm = "asr",
        skip_bad: SkipBad = False,
        audio_check: AudioCheck = "header",
        force: Force = False,
    ) -> None:
        from polyspeech_cli.data.corpora import (
            corpus_input_files,
            prepare_lhotse_corpus,
        )
        from polyspeech_cli.prepare import run_prepare

        opts = _options(data_dir, corpus or name, "1,0,0", sample_rate, text_norm, skip_bad, 0, 1, audio_check, force)
        root = Path(corpus_dir).resolve()
        # the index files are listed once the corpus is read (a --download creates them)
        run_prepare(name, lambda bad: prepare_lhotse_corpus(name, root, bad, download, subset, audio_check), opts,
                    {"corpus_dir": root, "subset": subset}, lambda: corpus_input_files(name, root))

    command.__doc__ = f"Prepare {name} with Lhotse's recipe (its own train/dev/test parts)."
    return cli_command(command)


app.command("librispeech")(_lhotse_command("librispeech", "Parts, e.g. train-clean-100,dev-clean (auto: all found)."))
app.command("aishell")(_lhotse_command("aishell", "Ignored: AISHELL-1 has train/dev/test."))
app.command("commonvoice")(_lhotse_command("commonvoice", "Languages, e.g. en,zh-CN (auto: all found)."))
