"""Decoding (`polyspeech decode | transcribe | synthesize`): search correctness, restricted
vocabularies, the output contract, and user errors.

One session-scoped fixture builds a complete (tiny, barely trained) system in the recipe's
layout: exp/lm (the multitask LM, trained a few dozen steps), exp/codec/model.safetensors (an untrained
SSET codec that made the speech tokens) and exp/vocoder/model.safetensors (an untrained speech decoder).
Quality is not the point here; correctness of the machinery is.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from polyspeech_cli.decode import lm_io
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.decode.recognize import classify_items
from polyspeech_cli.lm.tasks import output_range
from polyspeech_cli.decode.search import (
    SamplingConfig,
    sample,
    beam_search,
    filter_logits,
    greedy,
)
from polyspeech_cli.decode.options import TTSOptions
from polyspeech_cli.decode.tts import generate_speech

torch.set_num_threads(1)
SR = 16000
UTTS = [  # text, language, speaker, gender, f0
    ("good day", "en", "anna", "F", 220.0), ("the old house", "en", "anna", "F", 230.0),
    ("we are here", "en", "bert", "M", 110.0), ("nice time", "en", "bert", "M", 120.0),
    ("guten tag", "de", "carla", "F", 210.0), ("das alte haus", "de", "carla", "F", 240.0),
    ("wir sind hier", "de", "dirk", "M", 100.0), ("schöne zeit", "de", "dirk", "M", 130.0),
]


def _voice(f0: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    src = sum(0.6**k * np.sin(2 * np.pi * k * f0 * (1 + 0.05 * np.sin(3 * t)) * t) for k in range(1, 8))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * src * env / np.abs(src).max() + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="session")
def system(tmp_path_factory) -> dict:
    from lhotse import (
        CutSet,
        Fbank,
        FbankConfig,
        Recording,
        RecordingSet,
        SupervisionSegment,
        SupervisionSet,
    )
    from lhotse.features.io import NumpyFilesWriter

    from polyspeech_cli.codec.checkpoint import save_model as save_codec
    from polyspeech_cli.codec.config import CodecConfig
    from polyspeech_cli.codec.model import SSETCodec
    from polyspeech_cli.lm.config import TrainConfig
    from polyspeech_cli.lm.train import train
    from polyspeech_cli.tokens.sset_tokens import SSETExtractor
    from polyspeech_cli.vocoder.checkpoint import save_model
    from polyspeech_cli.vocoder.model import DecoderConfig, SpeechDecoder
    from polyspeech_cli.vocoder.speaker import SpeakerConfig
    from polyspeech_cli.vocoder.config import VocoderConfig

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("decode")
    recs, sups = [], []
    for i, (text, lang, spk, gender, f0) in enumerate(UTTS):
        path = root / "audio" / f"u{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, _voice(f0, 1.2 + 0.1 * i, i), SR)
        recs.append(Recording.from_file(path, recording_id=f"u{i}"))
        sups.append(SupervisionSegment(f"u{i}", f"u{i}", 0, recs[-1].duration, text=text, language=lang, speaker=spk, gender=gender))
    cuts = CutSet.from_manifests(RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups))
    cuts = cuts.compute_and_store_features(Fbank(FbankConfig(num_mel_bins=80)), storage_path=root / "fbank", storage_type=NumpyFilesWriter)
    # An untrained SSET codec (2 books x 16 codes) and the tokens it gives, as extract-tokens would.
    torch.manual_seed(0)
    ccfg = CodecConfig(channels=16, res_blocks=1, latent_dim=8, n_codebooks=2, codebook_size=16, downsample=2)
    codec = SSETCodec(80, ccfg)
    codec.train()
    with torch.no_grad():  # one forward pass initialises the codebooks from data
        codec(torch.randn(2, 50, 80))
    meta = {"feat_dim": 80, "feature_type": "fbank", "frame_shift": 0.01, "normalization": "utterance_mvn", "token_frame_shift": 0.02}
    save_codec(root / "exp" / "codec" / "model.safetensors", codec.eval(), ccfg, meta, step=0)
    ext = SSETExtractor(root / "exp" / "codec" / "model.safetensors", device="cpu")
    out = []
    with NumpyFilesWriter(root / "sset") as writer:
        for cut, arr in zip(cuts, ext.process(list(cuts))):
            out.append(ext.attach(cut, arr, writer))
    (root / "sset" / "sset.json").write_text(json.dumps(ext.info()))
    CutSet.from_cuts(out).to_file(root / "cuts.jsonl.gz")
    # An untrained speech decoder.
    vcfg = VocoderConfig(decoder=DecoderConfig(channels=16, blocks=1, dilations=[1], speaker=SpeakerConfig(channels=8, conv_layers=1, gru_dim=8, embed_dim=8)))
    vcfg.mel.griffin_lim_iters = 4
    save_model(root / "exp" / "vocoder" / "model.safetensors", vcfg, SpeechDecoder(80, vcfg.mel.n_mels, vcfg.decoder), None,
               {"feat_dim": 80, "frame_shift": 0.01, "feature_type": "fbank"})
    # The LM: tiny, all four tasks, a few dozen steps.
    cfg = TrainConfig()
    cfg.model.d_model, cfg.model.n_layers, cfg.model.n_heads, cfg.model.n_kv_heads, cfg.model.d_ff = 32, 2, 2, 2, 64
    cfg.model.prefix_lm, cfg.model.aligned_positions = True, True
    cfg.data.speech_tokens, cfg.data.speech_codebooks = "sset", 2
    cfg.tasks = ["asr", "tts", "lid", "gid"]
    cfg.max_duration, cfg.warmup_steps, cfg.lr, cfg.threads, cfg.max_steps = 30.0, 5, 3e-3, 1, 30
    cfg.valid_every, cfg.eval_every, cfg.checkpoint_every, cfg.log_every = 0, 0, 1000, 10
    train(cfg, root / "cuts.jsonl.gz", None, root / "exp" / "lm", progress=False, log=lambda *a: None)
    return {"root": root, "cuts": root / "cuts.jsonl.gz", "exp": root / "exp" / "lm", "lm": lm_io.load_lm(root / "exp" / "lm")}


@pytest.fixture(scope="session", params=["prefix_lm+aligned", "plain"])
def random_lm(system, request) -> lm_io.LoadedLM:
    """The same LM untrained: its outputs are long and varied (the 30-step one mostly says eos at
    once for ASR), which is what the search tests need. `plain`: causal attention and ordinary
    positions (the 2-D padding-mask path of the decoder)."""
    import copy

    from polyspeech_cli.lm.checkpoint import build_model

    lm = system["lm"]
    cfg = copy.deepcopy(lm.cfg)
    if request.param == "plain":
        cfg.model.prefix_lm, cfg.model.aligned_positions = False, False
    torch.manual_seed(1)
    model = build_model(cfg, lm.vocab, 80).eval()
    model.rates.copy_(lm.model.rates)
    return lm_io.LoadedLM(model, lm.vocab, cfg, lm.exp_dir, lm.checkpoint, 80)


def _items(system, task: str = "asr", n: int = 5) -> list[dict]:
    from lhotse import CutSet

    lm = system["lm"]
    return [lm_io.cut_item(lm, task, c) for c in list(CutSet.from_file(system["cuts"]))[:n]]


def _session(lm, items, task="asr", use_cache=True):
    return lm_io.Session(lm, lm_io.build_batch(lm, task, items), use_cache)


class ToySession:
    """A fake LM over 5 tokens (0 = eos): fixed random logits per (step, last token)."""

    def __init__(self, n: int, seed: int) -> None:
        self.table = torch.randn(8, 5, 5, generator=torch.Generator().manual_seed(seed)) * 2
        self.last, self.t = torch.zeros(n, dtype=torch.long), 0

    def prefill(self) -> torch.Tensor:
        return self.table[0][self.last]

    def select(self, idx: torch.Tensor) -> None:
        self.last = self.last[idx]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.t, self.last = self.t + 1, tokens
        return self.table[self.t][self.last]


def _toy_best(seed: int, max_new: int) -> tuple[float, list[int]]:
    """Exhaustive search: the most likely output (ending in eos, or max_new tokens long)."""
    import itertools

    table = ToySession(1, seed).table.log_softmax(-1)
    best = (float("-inf"), [])
    for n in range(max_new + 1):
        for seq in itertools.product(range(1, 5), repeat=n):
            last, lp = 0, 0.0
            for t, tok in enumerate(seq):
                lp, last = lp + float(table[t, last, tok]), tok
            if n < max_new:
                lp += float(table[n, last, 0])
            best = max(best, (lp, list(seq)))
    return best


# ---- search -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["random", "trained"])
def test_greedy_equals_beam1_and_one_row_at_a_time(system, random_lm, which):
    lm = random_lm if which == "random" else system["lm"]
    items = _items(system)
    lo, hi = output_range(lm.vocab, "asr")
    eos = lm.vocab.eos
    g = greedy(_session(lm, items), [40] * len(items), lo, hi, eos)
    b1 = beam_search(_session(lm, items), [40] * len(items), lo, hi, eos, beam=1)
    assert g == b1
    if which == "random":
        assert sum(map(len, g)) > 20  # the check above compared real outputs
    # Batched (right-padded) decoding = each row decoded alone.
    assert [greedy(_session(lm, items[i : i + 1]), [40], lo, hi, eos)[0] for i in range(len(items))] == g


def test_beam_search_is_exact_with_a_wide_beam_on_a_toy_lm():
    for seed in range(5):
        _, best = _toy_best(seed, 4)
        toy = lambda seed=seed: ToySession(1, seed)
        assert beam_search(toy(), [4], 1, 5, 0, beam=300)[0] == best
        assert greedy(toy(), [4], 1, 5, 0) == beam_search(toy(), [4], 1, 5, 0, beam=1)


def test_sampling_keeps_each_position_in_its_range_and_each_row_to_its_min_length():
    """Codebook-by-codebook ranges (even positions 1-2, odd 3-4), eos only after whole frames and
    only once a row has its own min_new tokens: what TTS relies on."""
    def allowed(t: int) -> tuple[int, int, bool]:
        return (1, 3, True) if t % 2 == 0 else (3, 5, False)

    lengths = set()
    for seed in range(40):
        toy = ToySession(2, seed)
        toy.table[:, :, 0] += 3  # eos likely wherever allowed
        out = sample(toy, [0, 4], [7, 7], allowed, 0, SamplingConfig(), torch.Generator().manual_seed(seed))
        for row, floor in zip(out, (0, 4)):
            assert all(tok in ((1, 2) if t % 2 == 0 else (3, 4)) for t, tok in enumerate(row))
            assert len(row) >= floor and (len(row) % 2 == 0 or len(row) == 7)
            lengths.add(len(row))
    assert 0 in lengths and 4 in lengths  # eos was taken as early as each row allows


class LoopSession:
    """A fake LM over 5 tokens (0 = eos) that always prefers token 2, by a hair: greedy loops on it."""

    def __init__(self, n: int) -> None:
        self.logits = torch.tensor([-9.0, 0.9, 1.0, 0.9, 0.9]).expand(n, -1)

    def prefill(self) -> torch.Tensor:
        return self.logits.clone()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits.clone()


def test_repetition_aware_sampling_breaks_loops_only_where_the_window_repeats():
    """VALL-E 2's repetition-aware sampling: the filtered draw (here greedy) stands unless it
    already makes more than `threshold` of the row's last `window` tokens; then it is redrawn from
    the whole distribution."""
    allowed = lambda t: (1, 5, True)
    g = lambda: torch.Generator().manual_seed(0)
    greedy_loop = sample(LoopSession(3), [60] * 3, [60] * 3, allowed, 0, SamplingConfig(top_k=1), g())
    assert all(row == [2] * 60 for row in greedy_loop)
    w, thr = 5, 0.2
    out = sample(LoopSession(3), [60] * 3, [60] * 3, allowed, 0, SamplingConfig(top_k=1, repetition_window=w, repetition_threshold=thr), g())
    for row in out:
        assert len(row) == 60 and 0.2 < row.count(2) / len(row) < 0.8  # loops broken, greedy's token still the commonest kind
        for t, tok in enumerate(row):
            if row[max(0, t - w) : t].count(2) <= thr * w:
                assert tok == 2  # the filtered draw stands where the window does not repeat it


def test_cached_equals_recompute(system, random_lm):
    lm, items = random_lm, _items(system)
    lo, hi = output_range(lm.vocab, "asr")
    eos = lm.vocab.eos
    for search in (lambda s: greedy(s, [30] * 5, lo, hi, eos, min_new=30), lambda s: greedy(s, [30] * 5, lo, hi, eos),
                   lambda s: beam_search(s, [20] * 5, lo, hi, eos, beam=3)):
        cached = search(_session(lm, items, use_cache=True))
        assert cached == search(_session(lm, items, use_cache=False)) and sum(map(len, cached)) > 20
    texts = [lm_io.text_ids(lm, t, lang, "x") for t, lang in (("good day", "en"), ("das alte haus", "de"))]
    opts = TTSOptions(min_ratio=1.0, seed=3)
    a = generate_speech(lm, texts, opts, torch.Generator().manual_seed(3), use_cache=True)
    b = generate_speech(lm, texts, opts, torch.Generator().manual_seed(3), use_cache=False)
    assert a == b and all(len(x) > 0 for x in a)


def test_restricted_vocabularies(system, random_lm):
    for lm in (random_lm,):
        v = lm.vocab
        items = _items(system, n=8)
        lo, hi = output_range(lm.vocab, "asr")
        for use_beam in (False, True):
            s = _session(lm, items)
            ids = beam_search(s, [30] * 8, lo, hi, v.eos, 3) if use_beam else greedy(s, [30] * 8, lo, hi, v.eos)
            assert all(v.text_offset <= t < v.speech_offset for row in ids for t in row)
        texts = [lm_io.text_ids(lm, t, lang, "x") for t, lang in (("good day", "en"), ("wir sind hier", "de"), ("nice time", "en"))]
        off, size, k = lm_io.speech_layout(lm)
        for seed in range(2):
            for row in generate_speech(lm, texts, TTSOptions(temperature=1.5, seed=seed), torch.Generator().manual_seed(seed)):
                assert len(row) % k == 0 and len(row) > 0
                for j, t in enumerate(row):  # codebook c of each frame stays in its own range
                    c = j % k
                    assert off + c * size <= t < off + (c + 1) * size
        for task, labels in (("lid", {"en", "de"}), ("gid", {"M", "F"})):
            for p in classify_items(lm, task, items):
                assert set(p) == labels and abs(sum(p.values()) - 1.0) < 1e-5 and all(0 <= x <= 1 for x in p.values())


def test_ctc_prefix_scores_of_complete_hypotheses_equal_the_ctc_likelihood():
    import torch.nn.functional as F

    from polyspeech_cli.decode.ctc_prefix import CTCPrefixScorer, pad_logprobs

    torch.manual_seed(0)
    logp, lens = torch.randn(2, 12, 5).log_softmax(-1), torch.tensor([12, 8])
    x = pad_logprobs(logp, lens)
    scorer = CTCPrefixScorer(x)
    for y in ([1, 2, 2, 3], [4], [], [1, 1]):
        r, last = scorer.initial(), torch.full((2,), -1)
        for c in y:
            cc = torch.full((2,), c)
            _, r = scorer.extend(x[:, :, c], x[:, :, 0], r, last, cc)
            last = cc
        for i in range(2):
            target = torch.tensor([y]) if y else torch.zeros(1, 0, dtype=torch.long)
            ref = -F.ctc_loss(logp[i : i + 1, : int(lens[i])].transpose(0, 1), target, lens[i : i + 1], torch.tensor([len(y)]), reduction="sum")
            assert abs(float(scorer.final(r)[i]) - float(ref)) < 1e-4


def test_joint_ctc_attention_beam(system, random_lm):
    from polyspeech_cli.decode.ctc_prefix import joint_beam_nbest
    from polyspeech_cli.decode.search import beam_nbest

    lm, items = random_lm, _items(system, n=3)
    batch = lm_io.build_batch(lm, "asr", items)
    lo, hi = output_range(lm.vocab, "asr")
    eos, off = lm.vocab.eos, lm_io.ctc_class_offset(lm)
    logp, lens = lm_io.ctc_logprobs(lm, batch)
    assert logp.shape[0] == 3 and torch.allclose(logp.exp().sum(-1), torch.ones(()), atol=1e-4)
    # Weight 0: the attention-only beam search, hypothesis for hypothesis.
    joint = joint_beam_nbest(lm_io.Session(lm, batch), logp, lens, off, [12] * 3, lo, hi, eos, 3, 0.0)
    att = beam_nbest(lm_io.Session(lm, batch), [12] * 3, lo, hi, eos, 3)
    assert [[h.tokens for h in row] for row in joint] == [[h.tokens for h in row] for row in att]
    # A peaked CTC with a high weight: the CTC labels win whatever the attention decoder says
    # (every token CTC-scored: pre_beam = all text units, else the attention pre-beam decides).
    target = [lo + 2, lo + 5, lo + 5, lo + 1]
    peaked = torch.full((3, 12, logp.shape[-1]), -30.0)
    for t in range(12):
        cls = [0, target[0] - off + 1, 0, target[1] - off + 1, 0, target[2] - off + 1, 0, target[3] - off + 1, 0, 0, 0, 0][t]
        peaked[:, t, cls] = 0.0
    out = joint_beam_nbest(lm_io.Session(lm, batch), peaked.log_softmax(-1), torch.tensor([12] * 3), off, [12] * 3, lo, hi, eos, 3, 0.9,
                           pre_beam=hi - lo)
    assert all(max(row, key=lambda h: h.logp).tokens == target for row in out)
    # And through the CLI path.
    from polyspeech_cli.decode.recognize import transcribe_items

    assert len(transcribe_items(system["lm"], items, 3, 0.0, ctc_weight=0.3)) == 3


def test_on_the_fly_features_match_the_stored_ones(system):
    """transcribe / ASR on synthesized audio compute fbank like `extract-tokens --type fbank` did."""
    from lhotse import CutSet

    lm = system["lm"]
    cut = next(iter(CutSet.from_file(system["cuts"])))
    wave, sr = sf.read(system["root"] / "audio" / "u0.wav", dtype="float32")
    stored = cut.load_features()
    fly = lm_io.wave_features(lm, wave, sr)
    n = min(len(stored), len(fly))
    assert abs(len(stored) - len(fly)) <= 1 and np.abs(stored[:n] - fly[:n]).max() < 1e-3
    fly8k = lm_io.wave_features(lm, wave[::2].copy(), 8000)  # other sample rates are resampled first
    assert abs(len(fly8k) - len(fly)) <= 1
    # Training recorded the features it read; decoding refuses to compute another kind on the fly.
    info = json.loads((system["exp"] / "features.json").read_text())
    assert info == {"type": "kaldi-fbank", "dim": 80, "frame_shift": 0.01, "sampling_rate": SR}
    other = dataclasses.replace(lm, exp_dir=system["root"] / "hubert_exp")
    other.exp_dir.mkdir(exist_ok=True)
    (other.exp_dir / "features.json").write_text(json.dumps({**info, "type": "hubert", "dim": 768}))
    with pytest.raises(PolyspeechError, match="only fbank"):
        lm_io.wave_features(other, wave, sr)


def test_sampling_filters():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, float("-inf")]])
    assert torch.isfinite(filter_logits(logits, SamplingConfig(top_k=2))).sum() == 2
    kept = torch.isfinite(filter_logits(logits, SamplingConfig(top_p=0.7)))
    assert kept.tolist() == [[True, True, False, False, False]]  # p = .66, .24, ...: the 2nd crosses 0.7
    assert torch.isfinite(filter_logits(logits, SamplingConfig(top_p=0.01))).sum() == 1


def test_nucleus_from_the_top_k_equals_the_full_sort():
    """`nucleus` sorts only the top k (grown as needed): the mask of sorting all V tokens, except
    where a token's mass-before sits within float rounding of top_p."""
    from polyspeech_cli.decode.search import nucleus

    g = torch.Generator().manual_seed(0)
    grown = 0
    for scale in (0.1, 1.0, 3.0, 10.0):
        for top_p in (0.05, 0.5, 0.9, 0.99):
            probs = (torch.randn(8, 2554, generator=g) * scale).softmax(-1)
            order = probs.argsort(-1, descending=True)
            before = probs.gather(-1, order).cumsum(-1) - probs.gather(-1, order)
            want = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, before <= top_p)
            near = torch.zeros_like(want).scatter(-1, order, (before - top_p).abs() < 1e-5)
            got = nucleus(probs, top_p)
            assert torch.equal(got | near, want | near) and got.any(-1).all()
            grown += int(want.sum(-1).max() > 64)  # cases where the first 64 did not cover top_p
    assert grown >= 3


# ---- the CLI stage ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seen", ["o", "u"])
def test_ngram_fusion_decides_what_the_acoustics_leave_open(system, random_lm, seen):
    """CTC is sure of "g" and torn between "o" and "u": the n-gram of texts that say "g<seen>" decides."""
    from polyspeech_cli.decode.ctc_prefix import joint_beam_nbest
    from polyspeech_cli.decode.lm_fusion import NgramFusion
    from polyspeech_cli.lm.ngram import CharNgram

    lm, items = random_lm, _items(system, n=2)
    batch = lm_io.build_batch(lm, "asr", items)
    lo, hi = output_range(lm.vocab, "asr")
    eos, off = lm.vocab.eos, lm_io.ctc_class_offset(lm)
    g, o, u = (lm.vocab.encode_text(c)[0] - off + 1 for c in "gou")
    x = torch.full((2, 6, lm_io.ctc_logprobs(lm, batch)[0].shape[-1]), -30.0)
    for t, cls in enumerate([0, g, 0, o, 0, 0]):
        x[:, t, cls] = 0.0
    x[:, 3, u] = 0.0  # frame 3: "o" or "u", equally likely
    text_lm = NgramFusion(CharNgram([f"g{seen}"] * 5, 3), lm.vocab)

    def best(**fusion) -> list[str]:
        nbest = joint_beam_nbest(lm_io.Session(lm, batch), x.log_softmax(-1), torch.tensor([6, 6]), off, [4, 4], lo, hi, eos, 3, 0.9,
                                 pre_beam=hi - lo, **fusion)
        return [lm.vocab.decode_text(max(row, key=lambda h: h.logp).tokens) for row in nbest]

    assert best(lm=text_lm, lm_weight=1.0) == [f"g{seen}"] * 2
    assert all(h in ("go", "gu") for h in best())  # without it: the CTC's two readings only


def test_decode_with_an_ngram(system, run_cli, tmp_path):
    exp, cuts = system["exp"], system["cuts"]
    ngram = tmp_path / "ngram.json"
    assert run_cli("train", "ngram", "--train-cuts", cuts, "--out", ngram).exit_code == 0
    joint = ["--task", "asr", "--exp-dir", exp, "--cuts", cuts, "--beam-size", "3", "--ctc-weight", "0.5"]
    r = run_cli("decode", *joint, "--set-name", "ngram", "--ngram", ngram, "--lm-weight", "0.5")
    assert r.exit_code == 0, r.output
    stamp = json.loads((exp / "decode_asr_ngram" / "decode.json").read_text())["key"]
    assert stamp["options"]["lm_weight"] == 0.5 and any(i["path"] == str(ngram.resolve()) for i in stamp["inputs"])
    # Bad combinations and a missing file: one line, nothing written.
    for extra, message in ((["--lm-weight", "0.5"], "--ngram FILE and --lm-weight"), (["--ngram", ngram], "--ngram FILE and --lm-weight"),
                           (["--ngram", tmp_path / "none.json", "--lm-weight", "0.5"], "none.json")):
        r = run_cli("decode", *joint, "--set-name", "bad", *extra)
        assert r.exit_code == 1 and message in r.output and not (exp / "decode_asr_bad").exists(), r.output


def test_decode_all_tasks_follow_the_contract(system, run_cli, monkeypatch):
    from polyspeech_cli.score.report import score_dirs
    from polyspeech_cli.score.results import read_results

    exp, cuts = system["exp"], system["cuts"]
    dirs = []
    for task, extra in (("asr", ["--beam-size", "3", "--ctc-weight", "0.3"]), ("lid", []), ("gid", []), ("tts", ["--max-ratio", "1.0"])):
        r = run_cli("decode", "--task", task, "--exp-dir", exp, "--cuts", cuts, "--batch-size", "3", *extra)
        assert r.exit_code == 0, r.output
        d = exp / f"decode_{task}_test"
        got, rows = read_results(d)
        assert got == task and len(rows) == len(UTTS)
        dirs.append(d)
    asr = read_results(exp / "decode_asr_test")[1]
    from lhotse import CutSet

    assert {r["id"] for r in asr} == set(CutSet.from_file(cuts).ids) and all(r["language"] in ("en", "de") for r in asr)
    hyp = (exp / "decode_asr_test" / "hyp.trn").read_text().splitlines()
    assert len(hyp) == 8 and all(line.endswith(")") and " (u" in line for line in hyp)
    tts = read_results(exp / "decode_tts_test")[1]
    for row in tts:
        wave, sr = sf.read(row["wav"])
        assert sr == SR and len(wave) > 0 and Path(row["reference_wav"]).is_file() and row["prompt"] != row["id"]
    assert not list(exp.glob(".tmp.*"))
    # A finished decode is not redone, and finding that out loads no model (a re-run recipe's decodes).
    with monkeypatch.context() as m:
        m.setattr(lm_io, "load_lm", lambda *a, **k: pytest.fail("a finished decode loaded its model"))
        r = run_cli("decode", "--task", "lid", "--exp-dir", exp, "--cuts", cuts, "--batch-size", "3")
    assert r.exit_code == 0 and "nothing to do" in r.output
    # ... nor torch: the CLI checks the stamp first (a re-run recipe pays ~2 s less per finished decode)
    argv = ["decode", "--task", "lid", "--exp-dir", str(exp), "--cuts", str(cuts), "--batch-size", "3"]
    code = f"import sys; from polyspeech_cli.cli import app; app({argv!r}, standalone_mode=False); print('torch:', 'torch' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "nothing to do" in p.stdout and "torch: False" in p.stdout, p.stdout + p.stderr
    # Changed options (or a rewritten checkpoint/cuts file) re-decode, saying what changed.
    r = run_cli("decode", "--task", "lid", "--exp-dir", exp, "--cuts", cuts, "--batch-size", "2")
    assert r.exit_code == 0 and "stale" in r.output and "batch_size" in r.output, r.output
    assert json.loads((exp / "decode_lid_test" / "decode.json").read_text())["key"]["options"]["batch_size"] == 2
    cuts.touch()
    r = run_cli("decode", "--task", "lid", "--exp-dir", exp, "--cuts", cuts, "--batch-size", "2")
    assert r.exit_code == 0 and "stale" in r.output and "mtime_ns" in r.output, r.output
    # ASR on the synthesized audio (features computed on the fly): the intelligibility stage.
    r = run_cli("decode", "--task", "asr", "--exp-dir", exp, "--cuts", exp / "decode_tts_test" / "cuts.jsonl.gz", "--set-name", "tts_test")
    assert r.exit_code == 0, r.output
    dirs.append(exp / "decode_asr_tts_test")
    scores = score_dirs(dirs, exp / "RESULTS.md", commands=["polyspeech decode ..."])
    assert scores["decode_lid_test"]["task"] == "lid" and 0 <= scores["decode_asr_test"]["cer"]["all"]


def test_decode_streams_the_cut_set(system, tmp_path, monkeypatch):
    """decode reads its manifest lazily, window by window (never `to_eager`), and writes the results
    of every window in manifest order."""
    from lhotse import CutSet

    from polyspeech_cli.data.manifest import read_cuts
    from polyspeech_cli.decode import run
    from polyspeech_cli.score.results import read_results

    def eager(self):
        raise AssertionError("decode loaded the whole manifest (CutSet.to_eager)")

    monkeypatch.setattr(CutSet, "to_eager", eager)
    monkeypatch.setattr(run, "WINDOW_CUTS", 3)  # 8 cuts: windows of 3, 3 and 2
    for task in ("asr", "lid"):
        d = run.decode(system["exp"], system["cuts"], run.DecodeOptions(task=task, set_name="stream", batch_size=2), log=lambda *a: None,
                       progress=False, out_root=tmp_path)
        rows = read_results(d)[1]
        assert [r["id"] for r in rows] == [c.id for c in read_cuts(system["cuts"])]
    assert len((tmp_path / "decode_asr_stream" / "hyp.trn").read_text().splitlines()) == len(UTTS)


def test_transcribe_and_synthesize(system, run_cli, tmp_path):
    exp, root = system["exp"], system["root"]
    r = run_cli("transcribe", root / "audio" / "u0.wav", root / "audio" / "u5.wav", "--model", exp)
    assert r.exit_code == 0, r.output
    assert "u0.wav" in r.output and "u5.wav" in r.output and ("en" in r.output or "de" in r.output)
    out = tmp_path / "out.wav"
    r = run_cli("synthesize", "--text", "good day", "--lang", "en", "--prompt", root / "audio" / "u1.wav", "--out", out, "--model", exp)
    assert r.exit_code == 0, r.output
    wave, sr = sf.read(out)
    assert sr == SR and len(wave) > 0


# ---- user errors: one line, exit 1, nothing written -------------------------------------------------
def _bad_prompts(tmp: Path) -> dict[str, Path]:
    sf.write(tmp / "silent.wav", np.zeros(2 * SR, dtype=np.float32), SR)
    sf.write(tmp / "short.wav", _voice(150.0, 0.5, 0), SR)
    (tmp / "text.wav").write_text("this is not audio")
    return {"silent": tmp / "silent.wav", "short": tmp / "short.wav", "not audio": tmp / "text.wav", "not found": tmp / "nope.wav"}


@pytest.mark.parametrize("case", ["empty text", "unknown language", "no language", "silent", "short", "not audio", "not found"])
def test_synthesize_bad_input(system, run_cli, tmp_path, case):
    prompts = _bad_prompts(tmp_path)
    text, lang, prompt = "good day", "en", system["root"] / "audio" / "u1.wav"
    if case == "empty text":
        text = "  "
    elif case == "unknown language":
        lang = "zh"
    elif case != "no language":
        prompt = prompts[case]
    out = tmp_path / "out.wav"
    lang_opt = [] if case == "no language" else ["--lang", lang]
    r = run_cli("synthesize", "--text", text, *lang_opt, "--prompt", prompt, "--out", out, "--model", system["exp"])
    assert r.exit_code == 1, r.output
    assert "error" in r.output and "Traceback" not in r.output
    expected = {"empty text": "empty", "unknown language": "'zh'", "no language": "--lang", "silent": "silent", "short": "1 s", "not audio": "not a readable audio",
                "not found": "not found"}[case]
    assert expected in r.output, r.output
    assert not out.exists() and not list(tmp_path.glob(".tmp.*"))


def test_decode_bad_input(system, run_cli, tmp_path):
    import shutil

    exp, cuts = system["exp"], system["cuts"]
    # An exp dir missing files.
    for missing in ("vocab.json", "config.yaml", ("ckpt", "model.safetensors")):
        names = missing if isinstance(missing, tuple) else (missing,)
        missing = names[0]
        broken = tmp_path / f"no_{missing.split('.')[0]}" / "lm"
        shutil.copytree(exp, broken, ignore=shutil.ignore_patterns("decode_*"))
        for name in names:
            p = broken / name
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        r = run_cli("decode", "--task", "asr", "--exp-dir", broken, "--cuts", cuts)
        assert r.exit_code == 1 and (missing.split(".")[0] in r.output or "checkpoint" in r.output), r.output
        assert not (broken / "decode_asr_test").exists()
    # TTS without its vocoder: names what is missing, writes nothing.
    r = run_cli("decode", "--task", "tts", "--exp-dir", exp, "--cuts", cuts, "--set-name", "novoc", "--vocoder", tmp_path / "novoc")
    assert r.exit_code == 1 and "model.safetensors" in r.output and not (exp / "decode_tts_novoc").exists()
    r = run_cli("decode", "--task", "tts", "--exp-dir", exp, "--cuts", cuts, "--set-name", "nocodec", "--codec", tmp_path / "nocodec")
    assert r.exit_code == 1 and "codec" in r.output and not (exp / "decode_tts_nocodec").exists()
    r = run_cli("decode", "--task", "tts", "--exp-dir", exp, "--cuts", cuts, "--set-name", "badprompt", "--prompt", _bad_prompts(tmp_path)["silent"])
    assert r.exit_code == 1 and "silent" in r.output and not (exp / "decode_tts_badprompt").exists()
    r = run_cli("decode", "--task", "xyz", "--exp-dir", exp, "--cuts", cuts)
    assert r.exit_code == 1 and "xyz" in r.output
    if not torch.cuda.is_available():  # a GPU asked for where there is none: one clear line, nothing written
        r = run_cli("decode", "--task", "asr", "--exp-dir", exp, "--cuts", cuts, "--set-name", "gpu", "--device", "cuda")
        assert r.exit_code == 1 and "no CUDA GPU" in r.output and not (exp / "decode_asr_gpu").exists()
    r = run_cli("transcribe", tmp_path / "text.wav", "--model", exp)
    assert r.exit_code == 1 and "not a readable audio" in r.output


def test_bench_decode_reports_every_speed(system, run_cli, tmp_path):
    out = tmp_path / "bench.json"
    r = run_cli("bench", "decode", "--exp-dir", system["exp"], "--cuts", system["cuts"], "--max-cuts", "4", "--tokens", "12",
                "--batch-size", "2", "--out", out)
    assert r.exit_code == 0, r.output
    got = json.loads(out.read_text())
    assert got["cached_equals_recompute"] and got["tokens"] == 12 and got["asr_utts"] == 4
    # TTS: every utterance synthesized, and the RTF is compute over the audio actually produced.
    assert got["tts_utts"] == 4 and got["tts_audio_s"] > 0
    assert abs(got["tts_rtf"] - (got["tts_lm_s"] + got["tts_wave_s"]) / got["tts_audio_s"]) < 1e-9
    assert "TTS end to end" in r.output


def test_tts_input_carries_the_language_token(system):
    lm = system["lm"]
    v = lm.vocab
    en, de = lm_io.text_ids(lm, "good day", "en", "t"), lm_io.text_ids(lm, "good day", "de", "t")
    assert en[0] == v.lang_id("en") and de[0] == v.lang_id("de") and en[1:] == de[1:] == v.encode_text("good day")
    # Training builds the same TTS input as decoding.
    from lhotse import CutSet

    from polyspeech_cli.lm.data import TaskDataset

    cut = next(c for c in CutSet.from_file(system["cuts"]) if c.supervisions[0].language == "de")
    prefix = TaskDataset("tts", v, lm.cfg.data)[CutSet.from_cuts([cut])]["prefix"][0].tolist()
    assert prefix == [v.task_id("tts")] + lm_io.cut_item(lm, "tts", cut)["text_ids"]


def test_oracle_tokens_resynthesize_each_cuts_own_tokens(system, run_cli):
    from lhotse import CutSet

    from polyspeech_cli.score.results import read_results

    exp, cuts = system["exp"], system["cuts"]
    r = run_cli("decode", "--task", "tts", "--oracle", "tokens", "--set-name", "resynth", "--exp-dir", exp, "--cuts", cuts, "--batch-size", "4")
    assert r.exit_code == 0, r.output
    rows = {row["id"]: row for row in read_results(exp / "decode_tts_resynth")[1]}
    k = system["lm"].vocab.speech_codebooks
    for cut in CutSet.from_file(cuts):
        frames = cut.load_custom("sset").shape[0]
        assert rows[cut.id]["num_tokens"] == frames * k  # every frame of the cut's own tokens, nothing sampled
        assert abs(rows[cut.id]["duration"] - frames * 0.02) < 0.03
    r = run_cli("decode", "--task", "asr", "--oracle", "tokens", "--exp-dir", exp, "--cuts", cuts)
    assert r.exit_code == 1 and "--task tts" in r.output


def test_oracle_teacher_is_the_lms_argmax_given_the_real_history(system, run_cli):
    """`--oracle teacher`: every position's most likely token (in its book's range) given the real
    tokens before it, as the KV-cached decoder computes it step by step; batched = one row alone."""
    from lhotse import CutSet

    from polyspeech_cli.decode.tts import teacher_forced_speech
    from polyspeech_cli.score.results import read_results

    exp, cuts, lm = system["exp"], system["cuts"], system["lm"]
    off, size, k = lm_io.speech_layout(lm)
    cut_list = list(CutSet.from_file(cuts))[:3]
    texts = [lm_io.cut_item(lm, "tts", c)["text_ids"] for c in cut_list]
    real = [lm.vocab.speech_ids(c.load_custom("sset")) for c in cut_list]
    batched = teacher_forced_speech(lm, texts, real)
    for text, ids, got in zip(texts, real, batched):
        assert teacher_forced_speech(lm, [text], [ids])[0] == got
        session = lm_io.Session(lm, lm_io.build_batch(lm, "tts", [{"text_ids": text}]))
        logits, want = session.prefill(), []
        for j, tok in enumerate(ids):
            lo = off + (j % k) * size
            want.append(lo + int(logits[0, lo : lo + size].argmax()))
            logits = session.step(torch.tensor([tok]))
        assert got == want
    r = run_cli("decode", "--task", "tts", "--oracle", "teacher", "--set-name", "teacher", "--exp-dir", exp, "--cuts", cuts, "--batch-size", "4")
    assert r.exit_code == 0, r.output
    rows = {row["id"]: row for row in read_results(exp / "decode_tts_teacher")[1]}
    for cut in CutSet.from_file(cuts):
        assert rows[cut.id]["num_tokens"] == cut.load_custom("sset").shape[0] * k  # as long as the real tokens


@pytest.mark.parametrize("oracle", ["books:1", "features", "mel"])
def test_oracle_rows_of_the_waterfall_feed_the_back_end_real_data(system, run_cli, oracle):
    """Each waterfall row's audio is as long as the cut (the real data's length, nothing sampled);
    `mel` runs the vocoder alone, so it is the same audio whatever the speech decoder is."""
    import numpy as np
    import soundfile as sf
    from lhotse import CutSet

    from polyspeech_cli.score.results import read_results

    exp, cuts = system["exp"], system["cuts"]
    name = "wf_" + oracle.replace(":", "")
    r = run_cli("decode", "--task", "tts", "--oracle", oracle, "--set-name", name, "--exp-dir", exp, "--cuts", cuts, "--batch-size", "4")
    assert r.exit_code == 0, r.output
    rows = {row["id"]: row for row in read_results(exp / f"decode_tts_{name}")[1]}
    for cut in CutSet.from_file(cuts):
        assert abs(rows[cut.id]["duration"] - cut.duration) < 0.03, (oracle, cut.id)
    if oracle == "mel":
        from polyspeech_cli.audio import cut_audio, resample
        from polyspeech_cli.vocoder.mel import GriffinLim, MelConfig, wave_to_mel
        from polyspeech_cli.vocoder.synthesize import load_vocoder

        cfg: MelConfig = load_vocoder(exp.parent / "vocoder").cfg.mel
        cut = next(iter(CutSet.from_file(cuts)))
        want = GriffinLim(cfg)(torch.from_numpy(wave_to_mel(resample(cut_audio(cut), cut.sampling_rate, cfg.sample_rate), cfg))).numpy()
        got, _ = sf.read(rows[cut.id]["wav"], dtype="float32")
        peak = float(np.abs(want).max())
        want = want / peak * 0.99 if peak > 0.99 else want
        assert np.abs(got - want).max() < 1e-3  # the 16-bit file's rounding


@pytest.mark.parametrize("spec, message", [("books:3", "the codec has 2 books"), ("books:0", "expected tokens"),
                                           ("fbank", "expected tokens")])
def test_a_bad_oracle_is_one_line_naming_what_is_wrong(system, run_cli, spec, message):
    r = run_cli("decode", "--task", "tts", "--oracle", spec, "--set-name", "bad", "--exp-dir", system["exp"], "--cuts", system["cuts"])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output
    assert not (system["exp"] / "decode_tts_bad").exists()


@pytest.mark.parametrize("prefix_lm", [False, True])
def test_lean_decoder_matches_the_transformers_forward(prefix_lm):
    """KV-cached logits of `kv_cache.LeanDecoder` = the transformers forward over the whole sequence:
    grouped-query attention, right-padded rows, fractional positions, a cache that has to grow."""
    from polyspeech_cli.decode.kv_cache import LeanDecoder
    from polyspeech_cli.lm.model import ModelConfig, PolySpeechLM

    torch.manual_seed(0)
    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=96, prefix_lm=prefix_lm)
    m = PolySpeechLM(cfg, vocab_size=40, feat_dim=0, n_text=0, text_offset=2).eval()
    lens = torch.tensor([7, 4])
    mask = (torch.arange(7)[None] < lens[:, None]).long()
    x = torch.randn(2, 7, 64)
    pos = torch.arange(7.0)[None].repeat(2, 1) * 0.7
    spans = [(0, 5), (0, 3)]
    steps = torch.randint(3, 40, (2, 6))
    lean = LeanDecoder(m.llm)
    with torch.no_grad():
        logits, cache = lean.prefill(x, mask, m.attention_mask(mask, spans), pos, reserve=2)
        got = [logits] + [lean.step(steps[:, j], pos[torch.arange(2), lens - 1][:, None] + 1 + j, cache) for j in range(6)]
        # Reference: the padded prefix + the generated tokens, recomputed in one transformers call.
        full_x = torch.cat([x, m.llm.get_input_embeddings()(steps)], 1)
        full_mask = torch.cat([mask, torch.ones(2, 6, dtype=torch.long)], 1)
        full_pos = torch.cat([pos, pos[torch.arange(2), lens - 1][:, None] + 1 + torch.arange(6.0)], 1)
        ref = m.llm(inputs_embeds=full_x, attention_mask=m.attention_mask(full_mask, spans), position_ids=full_pos).logits
    assert cache.capacity >= 13 and cache.length == 13
    torch.testing.assert_close(got[0], ref[torch.arange(2), lens - 1], atol=1e-5, rtol=1e-4)
    for j in range(6):
        torch.testing.assert_close(got[j + 1], ref[:, 7 + j], atol=1e-5, rtol=1e-4)
    # Beam search reorders rows: the cache follows.
    cache.select(torch.tensor([1, 1]))
    assert torch.equal(cache.k[0][0], cache.k[0][1]) and torch.equal(cache.valid[0], cache.valid[1])


def test_lean_decoder_refuses_a_llama_variant_it_does_not_implement():
    from transformers import LlamaConfig, LlamaForCausalLM

    from polyspeech_cli.decode.kv_cache import LeanDecoder

    llm = LlamaForCausalLM(LlamaConfig(vocab_size=10, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, attention_bias=True))
    with pytest.raises(ValueError, match="attention_bias"):
        LeanDecoder(llm)


def test_stage_modules_import_transformers_only_to_build_a_model():
    """A re-run recipe starts one process per verb and most find their work done: the stage modules
    leave `transformers` (its Llama module pulls in scikit-learn and torch._dynamo, ~3 s) to the code
    that builds a model."""
    stages = ("decode.run", "lm.train", "codec.train", "vocoder.train", "tokens.extract")
    code = f"import sys; {'; '.join(f'import polyspeech_cli.{m}' for m in stages)}; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stdout + out.stderr
