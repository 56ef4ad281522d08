"""The one manifest reader (`polyspeech_cli.data.manifest.read_cuts`): lazy for .jsonl.gz and .json
alike, one-line errors; streaming prompts for TTS; extract-tokens refuses non-finite features."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from lhotse import CutSet
from lhotse.testing.dummies import DummyManifest

from polyspeech_cli.data import manifest
from polyspeech_cli.data.manifest import read_cuts
from polyspeech_cli.errors import PolyspeechError
from polyspeech_cli.tokens.toy import make_toy_cuts

from conftest import run_flat


@pytest.fixture(scope="module")
def dummy() -> CutSet:
    return DummyManifest(CutSet, begin_id=0, end_id=7)


@pytest.mark.parametrize("name", ["c.jsonl.gz", "c.jsonl", "c.json", "c.json.gz"])
def test_every_format_is_read_lazily_and_gives_the_same_cuts(tmp_path, dummy, name, monkeypatch):
    path = tmp_path / name
    dummy.to_file(path)
    cuts = read_cuts(path)
    assert cuts.is_lazy
    assert list(cuts) == list(dummy) and list(cuts) == list(dummy)  # every pass re-reads the file
    assert len(cuts) == len(dummy) and [c.id for c in cuts.subset(first=3)] == list(dummy.ids)[:3]
    monkeypatch.setattr(manifest, "CHUNK_CHARS", 5)  # the JSON array parse across many chunk boundaries
    assert list(read_cuts(path)) == list(dummy)


def test_the_reader_never_loads_a_manifest_eagerly(tmp_path, dummy, monkeypatch):
    dummy.to_file(tmp_path / "c.json")
    dummy.to_file(tmp_path / "c.jsonl.gz")
    import lhotse.serialization

    def boom(*a, **k):
        raise AssertionError("the whole manifest was loaded")

    monkeypatch.setattr(lhotse.serialization, "load_json", boom)
    monkeypatch.setattr(json, "load", boom)
    monkeypatch.setattr(CutSet, "to_eager", boom)
    assert list(read_cuts(tmp_path / "c.json")) == list(read_cuts(tmp_path / "c.jsonl.gz")) == list(dummy)


@pytest.mark.parametrize("case", ["missing", "empty jsonl", "empty json", "empty gz", "garbled", "not an array", "truncated",
                                  "not cuts", "bad name"])
def test_a_bad_manifest_is_one_line_naming_the_file(tmp_path, dummy, case):
    import gzip

    path = tmp_path / {"empty json": "m.json", "not an array": "m.json", "truncated": "m.json", "bad name": "m.txt",
                       "empty gz": "m.jsonl.gz"}.get(case, "m.jsonl")
    if case == "empty jsonl":
        path.write_text("\n")
    elif case == "empty json":
        path.write_text(" [ ] ")
    elif case == "empty gz":
        path.write_bytes(gzip.compress(b""))
    elif case == "garbled":
        path.write_text('{"id": "x", \n')
    elif case == "not an array":
        path.write_text('{"id": "x"}')
    elif case == "truncated":
        path.write_text(json.dumps([c.to_dict() for c in dummy])[:-40])
    elif case == "not cuts":
        path.write_text(json.dumps(next(iter(dummy)).recording.to_dict()) + "\n")
    elif case == "bad name":
        path.write_text("x")
    with pytest.raises(PolyspeechError) as e:
        list(read_cuts(path, fix="fix --cuts"))
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg, msg
    expected = {"missing": "not found", "empty jsonl": "holds no cuts", "empty json": "holds no cuts", "empty gz": "holds no cuts",
                "not cuts": "not cuts", "bad name": ".jsonl.gz"}.get(case, "not a readable")
    assert expected in msg, msg
    if case in ("missing", "empty jsonl"):
        assert "fix --cuts" in msg
    assert read_cuts(path, allow_empty=True).is_lazy if case.startswith("empty") else True


def test_cli_verb_names_an_empty_manifest(tmp_path):
    (tmp_path / "e_cuts_dev.jsonl.gz").write_bytes(__import__("gzip").compress(b""))
    r = run_flat("extract-tokens", "--type", "fbank", tmp_path / "e_cuts_dev.jsonl.gz", "--out-dir", tmp_path / "fb")
    assert r.exit_code == 1 and "e_cuts_dev.jsonl.gz" in r.output and "holds no cuts" in r.output and "Traceback" not in r.output


def test_prompt_table_picks_what_the_whole_set_would(tmp_path):
    """The two-longest-per-speaker table gives every cut the prompt a scan of all cuts gives."""
    from lhotse.utils import fastcopy

    from polyspeech_cli.decode.run import PromptTable
    from polyspeech_cli.lm.tasks import supervision

    rng = random.Random(0)
    base = list(DummyManifest(CutSet, begin_id=0, end_id=40, with_data=False))
    cuts = []
    for i, c in enumerate(base):
        d = rng.choice([0.5, 1.0, 1.5, 1.5, 2.0, 3.0])
        sup = fastcopy(c.supervisions[0], speaker=f"s{rng.randrange(6)}", duration=d) if c.supervisions else None
        cuts.append(fastcopy(c, duration=d, supervisions=[sup] if sup else []))
    cuts = [c for c in cuts if c.has_recording and c.supervisions]
    table = PromptTable(cuts)
    for c in cuts:
        spk = supervision(c).speaker
        others = [o for o in cuts if supervision(o).speaker == spk and o.duration >= 1.0 and o.id != c.id]
        if not others:
            with pytest.raises(PolyspeechError, match=c.id):
                table.prompt(c)
        else:
            assert table.prompt(c).id == max(others, key=lambda o: o.duration).id


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reader")
    make_toy_cuts(root / "wav", n=4, seconds=0.6).to_file(root / "toy_cuts_dev.jsonl.gz")
    return root / "toy_cuts_dev.jsonl.gz"


def _nan_for(cut_id: str, monkeypatch) -> None:
    from polyspeech_cli.tokens.fbank import FbankExtractor

    real = FbankExtractor.process

    def process(self, cuts):
        out = real(self, cuts)
        return [np.full_like(a, np.nan) if c.id == cut_id else a for c, a in zip(cuts, out)]

    monkeypatch.setattr(FbankExtractor, "process", process)


def test_extract_tokens_refuses_nan_features_naming_the_cut(toy, tmp_path, monkeypatch):
    _nan_for("toy002-2", monkeypatch)
    out = tmp_path / "fb"
    r = run_flat("extract-tokens", "--type", "fbank", toy, "--out-dir", out)
    assert r.exit_code == 1 and "'toy002-2'" in r.output and "NaN/inf" in r.output and "Traceback" not in r.output, r.output
    assert not (out / toy.name).exists() and not list(out.glob("tmp*")) and not list(out.glob(".tmp*"))
    r = run_flat("extract-tokens", "--type", "fbank", toy, "--out-dir", out, "--skip-bad")
    assert r.exit_code == 0 and "dropped 1 cut" in r.output and "toy002-2" in r.output, r.output
    kept = read_cuts(out / toy.name)
    assert [c.id for c in kept] == ["toy000-0", "toy001-1", "toy003-3"]
    assert all(np.isfinite(c.load_features()).all() for c in kept)


def test_extract_tokens_streams_in_windows_keeping_the_input_order(toy, tmp_path, monkeypatch):
    from polyspeech_cli.tokens import extract

    monkeypatch.setattr(extract, "WINDOW_CUTS", 3)
    monkeypatch.setattr(CutSet, "to_eager", lambda self: (_ for _ in ()).throw(AssertionError("to_eager")))
    r = run_flat("extract-tokens", "--type", "fbank", toy, "--out-dir", tmp_path / "fb")
    assert r.exit_code == 0, r.output
    assert [c.id for c in read_cuts(tmp_path / "fb" / toy.name)] == [c.id for c in read_cuts(toy)]
