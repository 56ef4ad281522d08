"""Shared fixtures: small generated corpora, the CLI runner, and the optional ../shared data."""

from __future__ import annotations

import os

# Two xdist workers share the machine's cores: one OpenMP thread each (and in every process they start,
# the recipes' included), set before numpy or torch start their thread pools. With the default (a thread
# per core in each process) the spinning threads of two processes slow both down many times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from polyspeech_cli.cli import app

REPO = Path(__file__).resolve().parents[1]
HEADER = "utt_id\tpath\tspeaker\tgender\tlanguage\tduration\ttext\n"


class CliResult:
    """Exit code + output with Rich's line wrapping undone (long tmp paths wrap at 80 columns)."""

    def __init__(self, result: object):
        self.exit_code, self.output = result.exit_code, " ".join(result.output.split())  # type: ignore[attr-defined]


def run_flat(*args: object) -> CliResult:
    """Invoke the CLI in-process; the output comes back as one line."""
    return CliResult(CliRunner().invoke(app, [str(a) for a in args]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files marked `long_run` (the quick recipes, minutes each) first, the rest in file order: with
    `--dist loadfile --no-loadscope-reorder` (pyproject addopts) each long file starts at once on its own
    worker while the other worker works through the short ones, instead of one long file running last."""
    items.sort(key=lambda item: item.get_closest_marker("long_run") is None)


@pytest.fixture
def run_cli():
    """Invoke the `polyspeech` CLI in-process; returns click's Result (exit_code, output)."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the repo (or $POLYSPEECH_SHARED); tests using it skip where it is absent."""
    path = Path(os.environ.get("POLYSPEECH_SHARED", REPO.parent / "shared"))
    if not (path / "data").is_dir():
        pytest.skip(f"shared data not found at {path} (set POLYSPEECH_SHARED)")
    return path


def tone(seconds: float = 1.0, sr: int = 16000, freq: float = 220.0) -> np.ndarray:
    """A short harmonic tone with a little noise: cheap, non-silent 'speech'."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(int(freq))
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def make_tsv_corpus(root: Path, n: int = 6, speakers: int = 2, sr: int = 16000, rows: list[str] | None = None) -> Path:
    """Write `n` tone files and a valid manifest.tsv (plus any extra raw `rows`) under `root`."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    for i in range(n):
        spk = f"spk{i % speakers}"
        sf.write(root / "audio" / f"u{i}.flac", tone(1.0 + 0.1 * i, sr, 200 + 20 * i), sr)
        gender = "F" if (i % speakers) % 2 == 0 else "M"
        lines.append(f"u{i}\taudio/u{i}.flac\t{spk}\t{gender}\ten\t{1.0 + 0.1 * i:.2f}\tHello, World number {i}!\n")
    lines += [r if r.endswith("\n") else r + "\n" for r in rows or []]
    (root / "manifest.tsv").write_text("".join(lines), encoding="utf-8")
    return root
