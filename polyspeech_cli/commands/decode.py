"""`polyspeech decode | transcribe | synthesize` and `polyspeech bench decode`: thin wrappers over
polyspeech_cli/decode/."""

from __future__ import annotations

from pathlib import Path

import typer

from polyspeech_cli.commands import cli_command, console
from polyspeech_cli.decode.options import TTSOptions  # torch-free: the defaults below are its fields (chosen on dev)

_TEMP = typer.Option(TTSOptions.temperature, help="TTS: sampling temperature.")
_TOPK = typer.Option(TTSOptions.top_k, help="TTS: sample among the k most likely tokens (0 = all).")
_TOPP = typer.Option(TTSOptions.top_p, help="TTS: nucleus sampling mass (1 = off).")
_MINR = typer.Option(TTSOptions.min_ratio, help="TTS: min length, x the expected length (training speech tokens per text unit x text units).")
_MAXR = typer.Option(TTSOptions.max_ratio, help="TTS: max length, x the expected length.")
_SEED = typer.Option(TTSOptions.seed, help="TTS: sampling seed.")
_RASW = typer.Option(TTSOptions.repetition_window, help="TTS: repetition-aware sampling window (VALL-E 2): a token already over "
                     "--repetition-threshold of the last N is redrawn from the whole distribution (0 = off).")
_RAST = typer.Option(TTSOptions.repetition_threshold, help="TTS: repetition-aware sampling threshold (share of the window).")
_CODEC = typer.Option(None, help="TTS: SSET codec dir/checkpoint (default: from the cuts' sset.json, else EXP/../codec).")
_VOCODER = typer.Option(None, help="TTS: speech decoder exp dir (default EXP/../vocoder).")


def _threads(n: int) -> None:
    import torch

    if n > 0:
        torch.set_num_threads(n)


@cli_command
def decode(
    task: str = typer.Option(..., "--task", help="asr | lid | gid | tts"),
    exp_dir: Path = typer.Option(..., "--exp-dir", help="LM exp dir (config.yaml, vocab.json, ckpt/)."),
    cuts: Path = typer.Option(..., "--cuts", help="Cuts to decode, e.g. data/fbank/synth_cuts_test.jsonl.gz (or a TTS decode's cuts.jsonl.gz)."),
    set_name: str = typer.Option("test", "--set-name", help="Output: EXP/decode_<task>_<set-name>/."),
    batch_size: int = typer.Option(8, help="Utterances decoded together."),
    beam_size: int = typer.Option(1, help="ASR: beam size (1 = greedy)."),
    length_penalty: float = typer.Option(0.0, help="ASR beam: rank finished hypotheses by logp / (length+1)^penalty."),
    ctc_weight: float = typer.Option(0.0, help="ASR beam: joint CTC/attention weight, CTC prefix scores from the LM's CTC head (ESPnet's ctc_weight)."),
    max_len_ratio: float = typer.Option(2.0, help="ASR: max output length, x the expected one (training rate x input length)."),
    ngram: Path | None = typer.Option(None, help="ASR joint beam: a character n-gram LM (`polyspeech train ngram`) fused into the score."),
    lm_weight: float = typer.Option(0.0, help="ASR: weight of the --ngram log probability (ESPnet's lm_weight; 0 = off)."),
    checkpoint: Path | None = typer.Option(None, help="LM checkpoint (default: the newest in EXP/ckpt)."),
    prompt: Path | None = typer.Option(None, help="TTS: one speaker prompt for every utterance (default: another utterance of the same speaker)."),
    codec: Path | None = _CODEC,
    vocoder: Path | None = _VOCODER,
    temperature: float = _TEMP, top_k: int = _TOPK, top_p: float = _TOPP, min_ratio: float = _MINR, max_ratio: float = _MAXR,
    seed: int = _SEED, repetition_window: int = _RASW, repetition_threshold: float = _RAST,
    oracle: str | None = typer.Option(None, "--oracle", help="TTS: feed the back end each cut's real data instead of sampled "
                                      "tokens, one row of its loss waterfall (use another --set-name): tokens (the LM's books of the "
                                      "real SSET tokens), teacher (the LM's most likely token at each position given the real ones "
                                      "before it), books:K (the first K real books), features (the real features into the "
                                      "speech decoder) or mel (the real audio's mel into the vocoder alone)."),
    oracle_tokens: bool = typer.Option(False, "--oracle-tokens", hidden=True, help="The older spelling of --oracle tokens."),
    overwrite: bool = typer.Option(False, help="Redo a finished decode with other settings."),
    threads: int = typer.Option(1, help="torch CPU threads (0 = torch's default)."),
    device: str = typer.Option("cpu", help="Where the LM runs: cpu, cuda, cuda:N, or auto (a visible GPU, else the CPU)."),
) -> None:
    """Decode a cut set with a trained LM: ASR, LID, GID or TTS -> EXP/decode_<task>_<set>/."""
    from polyspeech_cli.decode.options import DecodeOptions, already_decoded, finished_decode

    opts = DecodeOptions(task=task, set_name=set_name, batch_size=batch_size, beam_size=beam_size, length_penalty=length_penalty,
                         ctc_weight=ctc_weight, max_len_ratio=max_len_ratio, ngram=str(ngram) if ngram else None, lm_weight=lm_weight,
                         checkpoint=str(checkpoint) if checkpoint else None,
                         tts=TTSOptions(temperature, top_k, top_p, min_ratio, max_ratio, seed, repetition_window, repetition_threshold),
                         prompt=str(prompt) if prompt else None, codec=str(codec) if codec else None,
                         vocoder=str(vocoder) if vocoder else None, oracle=oracle or ("tokens" if oracle_tokens else None))
    if not overwrite and (done := finished_decode(exp_dir, cuts, opts)) is not None:  # before torch is imported
        console.print(already_decoded(done))
        return
    from polyspeech_cli.decode.run import decode as run

    _threads(threads)
    run(exp_dir, cuts, opts, overwrite=overwrite, log=console.print, device=device)


@cli_command
def transcribe(
    audio: list[Path] = typer.Argument(..., help="Audio files (WAV, FLAC or MP3; any sample rate)."),
    model: Path = typer.Option(..., "--model", "-m", help="LM exp dir."),
    beam_size: int = typer.Option(1, help="ASR beam size (1 = greedy)."),
    length_penalty: float = typer.Option(0.0, help="ASR beam length penalty."),
    checkpoint: Path | None = typer.Option(None, help="LM checkpoint (default: the newest)."),
    threads: int = typer.Option(1, help="torch CPU threads."),
) -> None:
    """Transcribe audio files: text, language and gender (fbank computed on the fly)."""
    from rich.table import Table

    from polyspeech_cli.decode.run import transcribe_files

    _threads(threads)
    rows = transcribe_files(model, audio, beam_size, length_penalty, checkpoint)
    table = Table("file", "language", "gender", "text")
    # Bare file names keep the table readable; full paths only when names repeat.
    unique = len({Path(r["file"]).name for r in rows}) == len(rows)
    for r in rows:
        r["file"] = Path(r["file"]).name if unique else r["file"]
        lid = f"{r['lid']} ({r['lid_p']:.2f})" if "lid" in r else "-"
        gid = f"{r['gid']} ({r['gid_p']:.2f})" if "gid" in r else "-"
        table.add_row(r["file"], lid, gid, r.get("text", "-"))
    console.print(table)


@cli_command
def synthesize(
    text: str = typer.Option(..., "--text", help="Text to speak."),
    lang: str | None = typer.Option(None, "--lang", help="Its language (ISO code; checked against the LM's)."),
    prompt: Path = typer.Option(..., "--prompt", help="Speaker prompt: >= 1 s of speech of the target voice."),
    out: Path = typer.Option(..., "--out", "-o", help="Output WAV."),
    model: Path = typer.Option(..., "--model", "-m", help="LM exp dir."),
    codec: Path | None = typer.Option(None, help="SSET codec dir/checkpoint (default MODEL/../codec)."),
    vocoder: Path | None = typer.Option(None, help="Speech decoder exp dir (default MODEL/../vocoder)."),
    temperature: float = _TEMP, top_k: int = _TOPK, top_p: float = _TOPP, min_ratio: float = _MINR, max_ratio: float = _MAXR,
    seed: int = _SEED, repetition_window: int = _RASW, repetition_threshold: float = _RAST,
    checkpoint: Path | None = typer.Option(None, help="LM checkpoint (default: the newest)."),
    threads: int = typer.Option(1, help="torch CPU threads."),
) -> None:
    """Synthesize one sentence in the voice of a prompt recording."""
    from polyspeech_cli.decode.run import synthesize as run

    _threads(threads)
    path = run(model, text, lang, prompt, out, codec, vocoder, TTSOptions(temperature, top_k, top_p, min_ratio, max_ratio, seed, repetition_window, repetition_threshold), checkpoint)
    console.print(f"wrote {path}")


@cli_command
def bench_decode(
    exp_dir: Path | None = typer.Option(None, "--exp-dir", help="A trained LM (default: an untrained one of conf/lm_tiny.yaml's shape)."),
    cuts: Path | None = typer.Option(None, "--cuts", help="Cuts for the ASR RTF (default: generated 3-s inputs)."),
    config: Path = typer.Option(Path("conf/lm_tiny.yaml"), "--config", "-c", help="LM config when no --exp-dir."),
    tokens: int = typer.Option(100, help="Output tokens of the cached-vs-recompute comparison."),
    max_cuts: int = typer.Option(32, help="Utterances for the ASR RTF."),
    batch_size: int = typer.Option(8, help="ASR batch size."),
    out: Path | None = typer.Option(None, help="Also write the numbers to this JSON file."),
    codec: Path | None = _CODEC,
    vocoder: Path | None = _VOCODER,
) -> None:
    """KV-cached vs recompute decoding speed, ASR and TTS real-time factors, one CPU thread (reported, not asserted)."""
    from polyspeech_cli.decode.bench import bench

    bench(exp_dir, cuts, config, tokens, max_cuts, batch_size, out, codec, vocoder)


@cli_command
def judge(
    asr_judge: str = typer.Option(..., "--asr-judge", help="whisper:DIR, a CTranslate2/faster-whisper or Hugging Face Whisper model dir."),
    cuts: Path = typer.Option(..., "--cuts", help="Cuts with audio and text: a TTS decode's cuts.jsonl.gz, or real audio."),
    out_root: Path = typer.Option(..., "--out-root", help="Writes OUT_ROOT/decode_asr_<set-name>/ (decode's ASR format)."),
    set_name: str = typer.Option(..., "--set-name", help="Names the output dir, e.g. tts_test."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Transcribe again even if a finished decode is there."),
) -> None:
    """An independent TTS intelligibility judge: Whisper's ASR of a cut set, as a decode dir that `score` and
    `compare --tts-asr` read like `decode --task asr`'s."""
    from polyspeech_cli.decode.whisper import is_whisper, whisper_decode
    from polyspeech_cli.errors import PolyspeechError

    if not is_whisper(asr_judge):
        raise PolyspeechError(f"--asr-judge {asr_judge}: `polyspeech judge` runs whisper:DIR; for an ASR LM use "
                              "`polyspeech decode --task asr --exp-dir LM`")
    whisper_decode(asr_judge, cuts, set_name, out_root, log=console.print, overwrite=overwrite)
