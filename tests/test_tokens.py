"""extract-tokens: fbank / hubert / encodec / kmeans over toy cut sets, and its error paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_flat
from fakes import tiny_hubert
from lhotse import CutSet, Features
from lhotse.features.io import NumpyFilesWriter
from lhotse.utils import fastcopy

from polyspeech_cli.tokens.toy import make_toy_cuts

torch.set_num_threads(1)


run = run_flat


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tok")
    make_toy_cuts(root / "wav", n=4, seconds=1.0).to_file(root / "toy_cuts_dev.jsonl.gz")
    r = run("extract-tokens", "--type", "fbank", root / "toy_cuts_dev.jsonl.gz", "--out-dir", root / "fbank")
    assert r.exit_code == 0, r.output
    return root


def test_fbank_manifest_points_to_loadable_features(data: Path) -> None:
    raw, cuts = CutSet.from_file(data / "toy_cuts_dev.jsonl.gz"), CutSet.from_file(data / "fbank" / "toy_cuts_dev.jsonl.gz")
    assert [c.id for c in cuts] == [c.id for c in raw]
    for c in cuts:
        x = c.load_features()
        assert x.shape == (c.num_frames, 80) and x.dtype == np.float32 and np.isfinite(x).all()
        assert abs(x.shape[0] * 0.01 - c.duration) < 0.02
        assert c.supervisions[0].language == "en"  # supervisions survive
    info = json.loads((data / "fbank" / "fbank.json").read_text())
    assert info["type"] == "fbank" and info["dim"] == 80 and info["frame_shift"] == 0.01


def test_rerun_is_a_no_op(data: Path) -> None:
    out = data / "fbank" / "toy_cuts_dev.jsonl.gz"
    before = out.stat().st_mtime_ns
    r = run("extract-tokens", "--type", "fbank", data / "toy_cuts_dev.jsonl.gz", "--out-dir", data / "fbank")
    assert r.exit_code == 0 and "nothing to do" in r.output
    assert out.stat().st_mtime_ns == before


def test_changed_option_or_rewritten_input_re_runs(data: Path, tmp_path: Path) -> None:
    src, out_dir = tmp_path / "toy_cuts_dev.jsonl.gz", tmp_path / "fb"
    CutSet.from_file(data / "toy_cuts_dev.jsonl.gz").to_file(src)
    args = ["extract-tokens", "--type", "fbank", src, "--out-dir", out_dir]
    assert run(*args).exit_code == 0 and "nothing to do" in run(*args).output
    r = run(*args, "--num-mel-bins", 40)  # another option: extracted again
    assert r.exit_code == 0 and "changed: options.fingerprint.dim" in r.output, r.output
    assert CutSet.from_file(out_dir / src.name)[0].load_features().shape[1] == 40
    assert "nothing to do" in run(*args, "--num-mel-bins", 40).output
    CutSet.from_file(src).subset(first=3).to_file(src)  # a rewritten input: extracted again
    r = run(*args, "--num-mel-bins", 40)
    assert r.exit_code == 0 and "changed: inputs" in r.output, r.output
    assert len(CutSet.from_file(out_dir / src.name)) == 3
    (out_dir / "fbank.json").unlink()  # a missing output: extracted again
    assert "nothing to do" not in run(*args, "--num-mel-bins", 40).output and (out_dir / "fbank.json").is_file()


def test_kmeans_tokens_in_range_and_centroids_reused(data: Path) -> None:
    fb = data / "fbank" / "toy_cuts_dev.jsonl.gz"
    r = run("extract-tokens", "--type", "kmeans", fb, "--out-dir", data / "km", "--k", 16)
    assert r.exit_code == 0, r.output
    cuts = CutSet.from_file(data / "km" / "toy_cuts_dev.jsonl.gz")
    for c in cuts:
        t = c.load_custom("kmeans")
        assert t.shape == (c.num_frames,) and np.issubdtype(t.dtype, np.integer)
        assert 0 <= t.min() and t.max() < 16
        assert c.load_features().shape[1] == 80  # the fbank features are kept next to the tokens
    assert len(np.unique(np.concatenate([c.load_custom("kmeans") for c in cuts]))) > 8
    info = json.loads((data / "km" / "kmeans.json").read_text())
    assert info["codebook_size"] == 16 and info["num_codebooks"] == 1
    # consumers (LM, TTS) find <type>.json next to the token storage
    assert Path(cuts[0].custom["kmeans"].array.storage_path).parent == data / "km"
    # a second manifest in the same dir reuses the fitted centroids
    cuts.subset(first=2).to_file(data / "fbank" / "toy_cuts_test.jsonl.gz")
    mtime = (data / "km" / "kmeans_centroids.safetensors").stat().st_mtime_ns
    r = run("extract-tokens", "--type", "kmeans", data / "fbank" / "toy_cuts_test.jsonl.gz", "--out-dir", data / "km")
    assert r.exit_code == 0 and "using the centroids" in r.output
    assert (data / "km" / "kmeans_centroids.safetensors").stat().st_mtime_ns == mtime


def test_hubert_from_local_dir(data: Path) -> None:
    model = tiny_hubert(data / "tiny_hubert")
    r = run("extract-tokens", "--type", "hubert", data / "toy_cuts_dev.jsonl.gz", "--out-dir", data / "hubert",
            "--model", model, "--layer", 2, "--batch-size", 2, "--device", "cpu")
    assert r.exit_code == 0, r.output
    for c in CutSet.from_file(data / "hubert" / "toy_cuts_dev.jsonl.gz"):
        x = c.load_features()
        assert x.shape == (c.num_frames, 32) and np.isfinite(x).all()
        assert abs(x.shape[0] * 0.02 - c.duration) <= 0.04
    info = json.loads((data / "hubert" / "hubert.json").read_text())
    assert info["dim"] == 32 and info["layer"] == 2 and info["frame_shift"] == 0.02
    r = run("extract-tokens", "--type", "hubert", data / "toy_cuts_dev.jsonl.gz", "--out-dir", data / "h9", "--model", model, "--layer", 9)
    assert r.exit_code == 1 and "--layer 9" in r.output


def test_hubert_rejects_non_hubert_dir(data: Path) -> None:
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(data / "bert")
    for model in (data / "bert", data / "no_such_dir_or_hub_id"):
        r = run("extract-tokens", "--type", "hubert", data / "toy_cuts_dev.jsonl.gz", "--out-dir", data / "hb", "--model", model)
        assert r.exit_code == 1 and str(model) in r.output, r.output
    assert "bert" in run("extract-tokens", "--type", "hubert", data / "toy_cuts_dev.jsonl.gz", "--out-dir", data / "hb",
                         "--model", data / "bert").output
    assert not (data / "hb" / "toy_cuts_dev.jsonl.gz").exists()
    r = run("extract-tokens", "--type", "hubert", data / "toy_cuts_dev.jsonl.gz", "--out-dir", data / "hb")
    assert r.exit_code == 1 and "fbank" in r.output  # says what the offline default is


def test_encodec_tokens_from_checkpoint(data: Path) -> None:
    from encodec import EncodecModel

    from polyspeech_cli.tokens.encodec_tokens import BANDWIDTHS

    torch.manual_seed(0)
    model = EncodecModel._get_model(list(BANDWIDTHS), 24000, 1, causal=True, model_norm="weight_norm", audio_normalize=False)
    torch.save(model.state_dict(), data / "encodec.th")
    CutSet.from_file(data / "toy_cuts_dev.jsonl.gz").subset(first=2).to_file(data / "two.jsonl.gz")
    r = run("extract-tokens", "--type", "encodec", data / "two.jsonl.gz", "--out-dir", data / "enc",
            "--checkpoint", data / "encodec.th", "--bandwidth", 1.5, "--device", "cpu")
    assert r.exit_code == 0, r.output
    for c in CutSet.from_file(data / "enc" / "two.jsonl.gz"):
        t = c.load_custom("encodec")
        assert t.ndim == 2 and t.shape[1] == 2 and abs(t.shape[0] / 75 - c.duration) < 0.03
        assert 0 <= t.min() and t.max() < 1024
    info = json.loads((data / "enc" / "encodec.json").read_text())
    assert info["num_codebooks"] == 2 and info["codebook_size"] == 1024
    (data / "garbage.th").write_bytes(b"not a state dict")
    r = run("extract-tokens", "--type", "encodec", data / "two.jsonl.gz", "--out-dir", data / "enc2", "--checkpoint", data / "garbage.th")
    assert r.exit_code == 1 and "garbage.th" in r.output


def test_cut_without_audio_is_an_error(data: Path) -> None:
    cuts = CutSet.from_file(data / "toy_cuts_dev.jsonl.gz")
    bad = CutSet.from_cuts([cuts[0], fastcopy(cuts[1], recording=None)])
    bad.to_file(data / "noaudio.jsonl.gz")
    r = run("extract-tokens", "--type", "fbank", data / "noaudio.jsonl.gz", "--out-dir", data / "bad")
    assert r.exit_code == 1 and cuts[1].id in r.output and "no audio" in r.output
    assert not (data / "bad" / "noaudio.jsonl.gz").exists()
    assert not list((data / "bad").glob("**/*.lca"))  # no half-written storage either


def test_missing_audio_file_is_an_error(data: Path, tmp_path: Path) -> None:
    cuts = make_toy_cuts(tmp_path / "wav", n=2, seconds=0.5)
    (tmp_path / "wav" / "toy001.wav").unlink()
    cuts.to_file(tmp_path / "c.jsonl.gz")
    r = run("extract-tokens", "--type", "fbank", tmp_path / "c.jsonl.gz", "--out-dir", tmp_path / "out")
    assert r.exit_code == 1 and "toy001" in r.output
    assert not (tmp_path / "out" / "c.jsonl.gz").exists()


def test_tokens_need_features(data: Path) -> None:
    r = run("extract-tokens", "--type", "kmeans", data / "toy_cuts_dev.jsonl.gz", "--out-dir", data / "kmx", "--k", 4)
    assert r.exit_code == 1 and "has no features" in r.output and "--type fbank" in r.output
    assert not (data / "kmx" / "toy_cuts_dev.jsonl.gz").exists()


def test_nan_features_are_an_error(data: Path) -> None:
    cuts = CutSet.from_file(data / "fbank" / "toy_cuts_dev.jsonl.gz")
    x = cuts[2].load_features().copy()
    x[3, 5] = np.nan
    with NumpyFilesWriter(data / "nanfeats") as w:
        key = w.write(cuts[2].id, x)
        f = fastcopy(cuts[2].features, storage_type=w.name, storage_path=str(w.storage_path), storage_key=key)
    CutSet.from_cuts([cuts[0], fastcopy(cuts[2], features=f)]).to_file(data / "nan.jsonl.gz")
    r = run("extract-tokens", "--type", "kmeans", data / "nan.jsonl.gz", "--out-dir", data / "kmnan", "--k", 4)
    assert r.exit_code == 1 and cuts[2].id in r.output and "NaN" in r.output
    assert not (data / "kmnan" / "nan.jsonl.gz").exists()
    assert isinstance(f, Features)


def test_unknown_type_and_missing_manifest(data: Path) -> None:
    r = run("extract-tokens", "--type", "mfcc", data / "toy_cuts_dev.jsonl.gz", "--out-dir", data / "x")
    assert r.exit_code == 1 and "mfcc" in r.output
    r = run("extract-tokens", "--type", "fbank", data / "nope.jsonl.gz", "--out-dir", data / "x")
    assert r.exit_code == 1 and "nope.jsonl.gz" in r.output


def test_hubert_batching_matches_one_by_one_for_layer_norm_models(data: Path) -> None:
    from polyspeech_cli.tokens.hubert import HubertExtractor

    tiny_hubert(data / "tiny_hubert_ln", feat_extract_norm="layer", do_stable_layer_norm=True)
    ext = HubertExtractor(str(data / "tiny_hubert_ln"), layer=2, batch_size=2, device="cpu")
    cuts = list(CutSet.from_file(data / "toy_cuts_dev.jsonl.gz"))[:2]
    assert cuts[0].duration != cuts[1].duration  # so the batch really is padded
    batched = ext.process(cuts)
    for cut, b in zip(cuts, batched):
        (single,) = ext.process([cut])
        assert b.shape == single.shape and np.allclose(b, single, atol=1e-4)
