"""What makes the LM learn within a CPU budget: pooled evidence for the class tasks, voice
perturbation of training batches, and a task mix that does not depend on the order of --tasks."""

from __future__ import annotations

import torch

torch.set_num_threads(1)

from test_lm import data, tiny_cfg  # noqa: E402,F401  (the eSpeak cuts fixture and the tiny config)

from polyspeech_cli.augment import resample_time, speed_perturb, warp_feature_axis  # noqa: E402
from polyspeech_cli.lm.data import VoicePerturbConfig, augment_batch, perturb_voices  # noqa: E402
from polyspeech_cli.lm.data import SpecAugmentConfig  # noqa: E402
from polyspeech_cli.lm.model import ModelConfig, PolySpeechLM  # noqa: E402
from polyspeech_cli.lm.train import draw_task, task_draws, train  # noqa: E402


def _lid_batch(feats: torch.Tensor, lens: list[int]) -> dict:
    n = len(lens)
    return {"task": "lid", "prefix": [torch.tensor([6])] * n, "suffix": [torch.tensor([2])] * n, "feats": feats,
            "feat_lens": torch.tensor(lens)}


def test_class_pooling_adds_the_mean_speech_state_at_sep_only():
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, d_ff=64, encoder_layers=1, adapter="conv2d")
    plain = PolySpeechLM(cfg, vocab_size=40, feat_dim=16, n_text=20, text_offset=8).eval()
    pooled = PolySpeechLM(ModelConfig(**{**cfg.__dict__, "class_pooling": True}), vocab_size=40, feat_dim=16, n_text=20, text_offset=8).eval()
    pooled.load_state_dict(plain.state_dict())
    batch = _lid_batch(torch.randn(2, 41, 16), [29, 41])
    with torch.no_grad():
        speech = plain.speech_states(batch)
        x0, mask, spans, _ = plain.embed(batch, speech)
        x1, _, _, _ = pooled.embed(batch, speech)
        for i, (_, end) in enumerate(spans):
            n = speech[1][i]
            torch.testing.assert_close(x1[i, end], x0[i, end] + speech[0][i, :n].mean(0))  # <sep>
            diff = (x1[i] - x0[i]).abs().sum(-1)
            assert int((diff > 0).sum()) == 1  # nothing else moves (padding rows excluded by the mean)
        asr = dict(batch, task="asr")
        torch.testing.assert_close(pooled.embed(asr, speech)[0], plain.embed(asr, speech)[0])  # ASR rows untouched
        # decoding goes through embed(): the KV-cached prefill gives the teacher-forced logits
        from types import SimpleNamespace

        from polyspeech_cli.decode.lm_io import Session

        logits = Session(SimpleNamespace(model=pooled), batch).prefill()
        h, _, spans = pooled.hidden(batch)
        ref = torch.stack([pooled.llm.lm_head(h[i, e - 0]) for i, (_, e) in enumerate(spans)])
        torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-4)


def test_voice_perturbation_changes_length_and_formants_within_bounds():
    ramp = torch.arange(80, dtype=torch.float32).repeat(50, 1)
    fast = speed_perturb(ramp, 1.1)
    assert fast.shape == (round(50 / 1.1), 80)
    assert torch.allclose(fast[0, :70], torch.arange(70) / 1.1)  # every frequency 10% higher
    assert torch.allclose(warp_feature_axis(ramp, 1.0), ramp) and torch.equal(resample_time(ramp, 50), ramp)
    cfg = VoicePerturbConfig(speed=0.1, vtlp=0.1)
    feats, lens = torch.randn(3, 200, 80), torch.tensor([200, 150, 90])
    out, new = perturb_voices(feats, lens, cfg, torch.Generator().manual_seed(0))
    for n, m in zip(lens.tolist(), new.tolist()):
        assert n / 1.1 - 1 <= m <= n * 1.1 + 1
    assert new.tolist() != lens.tolist()  # rows are stretched
    again, _ = perturb_voices(feats, lens, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # reproducible from the generator (resume draws the same voices)
    # through augment_batch: only with the option on
    batch = {"task": "asr", "feats": feats, "feat_lens": lens}
    off = augment_batch(batch, SpecAugmentConfig(), 0.0, 0, torch.Generator().manual_seed(0))
    assert torch.equal(off["feats"], feats)
    on = augment_batch(batch, SpecAugmentConfig(), 0.0, 0, torch.Generator().manual_seed(0), cfg)
    assert on["feat_lens"].tolist() == new.tolist()


def test_task_draws_follow_names_not_order():
    import random

    a = {"asr": 0.7, "lid": 0.2, "gid": 0.1}
    b = {"gid": 0.1, "asr": 0.7, "lid": 0.2}
    ra, rb = random.Random(3), random.Random(3)
    assert [draw_task(ra, a) for _ in range(50)] == [draw_task(rb, b) for _ in range(50)]
    counts = task_draws(a, 3, 1000)
    assert sum(counts.values()) == 1000 and counts["asr"] > counts["lid"] > counts["gid"] > 0


def test_task_order_does_not_change_the_model(data, tmp_path):
    sums = []
    for i, tasks in enumerate((["asr", "lid"], ["lid", "asr"])):
        cfg = tiny_cfg(tasks=tasks, max_steps=6)
        cfg.model.class_pooling = True
        sums.append(train(cfg, data, None, tmp_path / f"run{i}", log=lambda *a: None, progress=False)["param_checksum"])
    assert sums[0] == sums[1]


def test_nan_features_stop_training_naming_the_cut(data, tmp_path):
    import numpy as np
    from lhotse import CutSet
    from lhotse.features.io import NumpyFilesWriter

    import pytest

    from polyspeech_cli.errors import PolyspeechError

    cuts = list(CutSet.from_file(data))
    bad = cuts[3]
    x = bad.load_features().copy()
    x[5, 7] = np.nan
    with NumpyFilesWriter(tmp_path / "feats") as w:
        key = w.write(bad.id, x)  # the cut keeps its id; only its features move
        bad.features.storage_path, bad.features.storage_key = str(tmp_path / "feats"), key
    CutSet.from_cuts(cuts).to_file(tmp_path / "cuts.jsonl.gz")
    with pytest.raises(PolyspeechError, match=f"cut '{bad.id}'.*NaN/inf"):
        train(tiny_cfg(tasks=["asr"], max_steps=4), tmp_path / "cuts.jsonl.gz", None, tmp_path / "exp", log=lambda *a: None, progress=False)
    assert not (tmp_path / "exp" / "model.safetensors").exists()


def test_second_lm_training_on_a_busy_exp_dir_is_refused(data, tmp_path):
    import pytest

    from polyspeech_cli.errors import PolyspeechError
    from polyspeech_cli.training import exp_dir_lock

    with exp_dir_lock(tmp_path / "exp"):  # as if another training held it (same-process: refused too)
        with pytest.raises(PolyspeechError, match="holds the lock"):
            train(tiny_cfg(tasks=["asr"], max_steps=2), data, None, tmp_path / "exp", log=lambda *a: None, progress=False)


def test_pooled_baseline_fits_and_writes_scores_compare_reads(data, tmp_path, run_cli):
    import json

    from polyspeech_cli.score.compare import metrics

    out = tmp_path / "pooled" / "scores.json"
    r = run_cli("pooled-baseline", "--train-cuts", str(data), "--cuts", str(data), "--out", str(out))
    assert r.exit_code == 0, r.output
    scores = json.loads(out.read_text())
    assert set(scores) == {"lid_test", "gid_test"}
    # 8 utterances, 160 pooled numbers: the training set itself is separable
    assert scores["lid_test"]["accuracy"] == 1.0 and scores["gid_test"]["accuracy"] == 1.0
    assert metrics(scores) == {"LID accuracy %": 100.0, "GID accuracy %": 100.0}
    r = run_cli("pooled-baseline", "--train-cuts", str(data), "--cuts", str(data), "--out", str(out), "--tasks", "asr")
    assert r.exit_code != 0 and "class tasks" in r.output
