"""Training-time regularisation of the LM: SpecAugment masks, random crops of class-task inputs and
label smoothing (`spec_augment`, `class_crop_seconds`, `label_smoothing` in conf/lm_*.yaml).

Every one of them must touch training batches only (never dev batches or decoding), stay inside
its configured bounds, be reproducible from the seed (resume included) and, when off, leave the
old behaviour bit for bit."""

from __future__ import annotations

import torch

torch.set_num_threads(1)

import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from lhotse import CutSet  # noqa: E402
from test_lm import data, tiny_cfg  # noqa: E402,F401  (the eSpeak cuts fixture and the tiny config)

from polyspeech_cli.config import load_config  # noqa: E402
from polyspeech_cli.errors import PolyspeechError  # noqa: E402
from polyspeech_cli.lm import train as train_mod  # noqa: E402
from polyspeech_cli.lm.checkpoint import build_model, load_model, read_checkpoint  # noqa: E402
from polyspeech_cli.lm.config import TrainConfig  # noqa: E402
from polyspeech_cli.lm.data import SpecAugmentConfig, TaskDataset, augment_batch, random_crop, spec_augment  # noqa: E402
from polyspeech_cli.lm.model import PolySpeechLM  # noqa: E402
from polyspeech_cli.fileio import list_checkpoints  # noqa: E402
from polyspeech_cli.training import run_key  # noqa: E402

SPEC = SpecAugmentConfig(num_freq_masks=2, freq_width=10, num_time_masks=3, time_width_ratio=0.1)


def _padded(lens: list[int], n_freq: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """Features without zeros (so a 0 means masked), padded with NaN (so padding stays visible)."""
    t = max(lens)
    x = torch.full((len(lens), t, n_freq), float("nan"))
    for i, n in enumerate(lens):
        x[i, :n] = torch.rand(n, n_freq) + 1.0
    return x, torch.tensor(lens)


def test_spec_augment_masks_stay_within_bounds():
    lens = [300, 120, 57]
    x, lens_t = _padded(lens)
    for seed in range(20):
        y = spec_augment(x, lens_t, SPEC, torch.Generator().manual_seed(seed))
        assert y.shape == x.shape
        for i, n in enumerate(lens):
            row, pad = y[i, :n], y[i, n:]
            assert torch.isnan(pad).all()  # padding untouched
            masked = row == 0
            freq_cols = masked.all(0)  # bins masked over every frame = frequency masks
            assert int(freq_cols.sum()) <= SPEC.num_freq_masks * SPEC.freq_width
            time_rows = masked[:, ~freq_cols].all(1) if (~freq_cols).any() else masked.all(1)
            assert int(time_rows.sum()) <= SPEC.num_time_masks * int(SPEC.time_width_ratio * n)
            # every zero is explained by a frequency or a time mask
            assert torch.equal(masked, freq_cols[None, :] | time_rows[:, None])
            frac = masked.float().mean().item()
            bound = (SPEC.num_freq_masks * SPEC.freq_width / 80) + SPEC.num_time_masks * SPEC.time_width_ratio
            assert frac <= bound + 1e-6
    # some masking does happen, and the same generator seed gives the same masks
    y1 = spec_augment(x, lens_t, SPEC, torch.Generator().manual_seed(3))
    y2 = spec_augment(x, lens_t, SPEC, torch.Generator().manual_seed(3))
    y3 = spec_augment(x, lens_t, SPEC, torch.Generator().manual_seed(4))
    assert torch.equal(torch.nan_to_num(y1, 7.0), torch.nan_to_num(y2, 7.0))
    assert not torch.equal(torch.nan_to_num(y1, 7.0), torch.nan_to_num(y3, 7.0))
    assert (y1[0, :300] == 0).any()
    assert not (x[:, :, :] == 0).any()  # the input is not modified in place


def test_random_crop_and_which_tasks_are_cropped():
    x, lens = _padded([500, 80, 200])
    y, new = random_crop(x, lens, 150, torch.Generator().manual_seed(0))
    assert new.tolist() == [150, 80, 150] and y.shape == (3, 150, 80)
    assert torch.equal(y[1, :80], x[1, :80])  # short rows stay whole
    windows = [x[0, s : s + 150] for s in range(0, 351)]
    assert any(torch.equal(y[0], w) for w in windows)  # a contiguous window of the original
    off = SpecAugmentConfig()
    for task, cropped in (("gid", True), ("lid", True), ("asr", False)):
        b = augment_batch({"task": task, "feats": x, "feat_lens": lens}, off, 0.0, 150, torch.Generator().manual_seed(0))
        assert (b["feats"].shape[1] == 150) == cropped
        assert "label_smoothing" not in b
    b = augment_batch({"task": "asr", "feats": x, "feat_lens": lens}, off, 0.1, 0, torch.Generator())
    assert b["label_smoothing"] == 0.1 and b["feats"] is x  # nothing else changed


def _model_and_batch(data, task="asr"):
    cfg = tiny_cfg(tasks=["asr", "lid", "gid"])
    cfg.data.speech_tokens = None
    cuts = CutSet.from_file(data)
    from polyspeech_cli.lm.vocab import build_vocab

    import tempfile
    from pathlib import Path

    texts = [c.supervisions[0].text for c in cuts]
    with tempfile.TemporaryDirectory() as tmp:
        vocab = build_vocab(texts, {"en", "de"}, cfg.vocab, Path(tmp), None, 0, 0)
    torch.manual_seed(0)
    model = build_model(cfg, vocab, 80)
    return model, TaskDataset(task, vocab, cfg.data)[cuts], cfg


def test_label_smoothing_changes_the_loss_and_zero_is_the_old_loss(data):
    model, batch, cfg = _model_and_batch(data)
    model.train()  # dropout is 0 in the tiny config: train-mode forward passes are deterministic
    plain = model(batch)
    w = cfg.model.ctc_weight
    assert torch.equal(plain["loss"], (1 - w) * plain["ce"] + w * plain["ctc"])  # the loss before this option existed
    zero = model({**batch, "label_smoothing": 0.0})
    assert torch.equal(zero["loss"], plain["loss"]) and torch.equal(zero["ce"], plain["ce"])
    smooth = model({**batch, "label_smoothing": 0.1})
    assert torch.equal(smooth["ce"], plain["ce"])  # the logged / dev cross-entropy stays the plain one
    assert not torch.allclose(smooth["loss"], plain["loss"])
    # the smoothed loss is the smoothed CE mixed with the same CTC
    lsce = (smooth["loss"] - w * smooth["ctc"]) / (1 - w)
    assert lsce.item() != pytest.approx(plain["ce"].item(), rel=1e-4)
    model.eval()  # dev batches: never smoothed, even if a batch carried the key
    with torch.no_grad():
        ev = model({**batch, "label_smoothing": 0.1})
        ref = model(batch)
    assert torch.equal(ev["loss"], ref["loss"])
    # and a class task: smoothing over the vocabulary raises the loss of a confident model
    logits = torch.tensor([[8.0, 0.0, 0.0]])
    assert F.cross_entropy(logits, torch.tensor([0]), label_smoothing=0.1) > F.cross_entropy(logits, torch.tensor([0]))


def test_augmentation_only_in_training_batches(data, tmp_path, monkeypatch):
    """train(): every training batch goes through augment_batch; no dev loss batch, dev evaluation
    (greedy decoding) or decoding batch does."""
    seen = {"augmented": 0, "train_forward": 0, "eval_forward_augmented": 0, "eval_forward": 0}
    real_augment, real_forward = train_mod.augment_batch, PolySpeechLM.forward

    def augment(batch, *a, **k):
        seen["augmented"] += 1
        out = real_augment(batch, *a, **k)
        out["_augmented"] = True
        return out

    def forward(self, batch):
        if self.training:
            seen["train_forward"] += 1
            assert batch.get("_augmented"), "a training batch skipped augmentation"
        else:
            seen["eval_forward"] += 1
            seen["eval_forward_augmented"] += bool(batch.get("_augmented"))
        return real_forward(self, batch)

    monkeypatch.setattr(train_mod, "augment_batch", augment)
    monkeypatch.setattr(PolySpeechLM, "forward", forward)
    cfg = tiny_cfg(tasks=["asr", "gid"], max_steps=6, valid_every=3, eval_every=3, eval_utts=4, label_smoothing=0.1, class_crop_seconds=0.5)
    cfg.data.speech_tokens = None
    cfg.spec_augment = SPEC
    train_mod.train(cfg, data, data, tmp_path / "exp", progress=False, log=lambda *a: None)
    assert seen["augmented"] == seen["train_forward"] == 6
    assert seen["eval_forward"] > 0 and seen["eval_forward_augmented"] == 0
    # decoding: the model's dev metrics are computed without the hook (greedy decoding never calls forward with it)
    model, vocab, saved = load_model(tmp_path / "exp")
    assert saved.spec_augment == SPEC and saved.label_smoothing == 0.1 and saved.class_crop_seconds == 0.5


def test_augmented_resume_is_exact(data, tmp_path):
    """Masks and crops are a function of (seed, step): 2N steps == N + --resume N (same weights)."""
    def cfg():
        c = tiny_cfg(tasks=["asr", "gid"], max_steps=8, checkpoint_every=4, warmup_steps=2, label_smoothing=0.1, class_crop_seconds=0.4)
        c.data.speech_tokens = None
        c.spec_augment = SPEC
        return c

    quiet = dict(progress=False, log=lambda *a: None)
    train_mod.train(cfg(), data, None, tmp_path / "a", **quiet)
    train_mod.train(cfg(), data, None, tmp_path / "b", stop_at=4, **quiet)
    train_mod.train(cfg(), data, None, tmp_path / "b", resume=True, **quiet)
    plain = cfg()
    plain.spec_augment, plain.label_smoothing, plain.class_crop_seconds = SpecAugmentConfig(), 0.0, 0.0
    train_mod.train(plain, data, None, tmp_path / "c", **quiet)
    a, b, c = (read_checkpoint(list_checkpoints(tmp_path / d)[-1]) for d in "abc")
    assert a["step"] == b["step"] == 8
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"])  # the augmentation did something


def test_config_keys_typos_and_ranges(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("spec_augment:\n  num_freq_masks: 2\n  freq_width: 27\n  num_time_masks: 2\n  time_width_ratio: 0.05\n"
                    "label_smoothing: 0.1\nclass_crop_seconds: 3.0\n")
    cfg = load_config(good, TrainConfig)
    assert cfg.spec_augment.enabled and cfg.label_smoothing == 0.1 and cfg.class_crop_seconds == 3.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec_augment:\n  num_time_mask: 2\n")
    with pytest.raises(PolyspeechError, match="did you mean 'num_time_masks'"):
        load_config(bad, TrainConfig)
    bad.write_text("label_smothing: 0.1\n")
    with pytest.raises(PolyspeechError, match="did you mean 'label_smoothing'"):
        load_config(bad, TrainConfig)
    from polyspeech_cli.lm.data import check_augment

    for spec, ls, crop in ((SpecAugmentConfig(time_width_ratio=1.5), 0.0, 0.0), (SpecAugmentConfig(), 1.0, 0.0),
                           (SpecAugmentConfig(num_freq_masks=-1), 0.0, 0.0), (SpecAugmentConfig(), 0.0, -1.0)):
        with pytest.raises(PolyspeechError, match="fix the config"):
            check_augment(spec, ls, crop)


def test_defaults_leave_the_run_key_of_older_exp_dirs(tmp_path):
    """At their defaults the new keys are not part of the run key: exp dirs trained before they
    existed still resume or skip."""
    cuts = tmp_path / "c.jsonl.gz"
    cuts.write_bytes(b"x")
    cfg = TrainConfig()
    key = train_mod.lm_run_key(cfg, cuts)
    old = run_key(cfg, cuts)
    for k in ("spec_augment", "label_smoothing", "class_crop_seconds", "perturb", "class_max_duration"):
        del old["options"][k]
    for k in ("class_pooling", "class_frame_weight"):
        del old["options"]["model"][k]
    assert key == old
    cfg.label_smoothing = 0.1
    assert train_mod.lm_run_key(cfg, cuts)["options"]["label_smoothing"] == 0.1
