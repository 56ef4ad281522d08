"""Typed YAML configs: unknown keys are errors with a suggestion; types are checked."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from polyspeech_cli.config import from_dict, load_config, save_config
from polyspeech_cli.errors import PolyspeechError


@dataclass
class Inner:
    dim: int = 4


@dataclass
class Example:
    learning_rate: float = 1e-3
    num_layers: int = 2
    tasks: list[str] = field(default_factory=lambda: ["asr"])
    inner: Inner = field(default_factory=Inner)
    name: str | None = None


def test_loads_nested_and_coerces(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1\nnum_layers: 3\ntasks: [asr, tts]\ninner: {dim: 8}\n")
    cfg = load_config(path, Example, overrides={"num_layers": 5, "name": None})
    assert cfg == Example(learning_rate=1.0, num_layers=5, tasks=["asr", "tts"], inner=Inner(8))
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml", Example) == cfg


def test_typo_names_key_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rat: 0.1\n")
    with pytest.raises(PolyspeechError, match=r"c.yaml: unknown key 'learning_rat', did you mean 'learning_rate'\?"):
        load_config(path, Example)
    with pytest.raises(PolyspeechError, match=r"unknown key 'dimm', did you mean 'dim'"):
        from_dict(Example, {"inner": {"dimm": 3}})


def test_wrong_types_and_files(tmp_path):
    with pytest.raises(PolyspeechError, match="expected int"):
        from_dict(Example, {"num_layers": "two"})
    with pytest.raises(PolyspeechError, match="'learning_rate': expected a number, got 'fast'"):
        from_dict(Example, {"learning_rate": "fast"})
    path = tmp_path / "e.yaml"
    path.write_text("learning_rate: 3e-3\n")  # PyYAML reads this as the string '3e-3'
    assert load_config(path, Example).learning_rate == 0.003
    with pytest.raises(PolyspeechError, match="config file not found"):
        load_config(tmp_path / "missing.yaml", Example)
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(PolyspeechError, match="bad.yaml: not valid UTF-8 YAML"):
        load_config(tmp_path / "bad.yaml", Example)


def test_cli_help_lists_every_verb(run_cli):
    result = run_cli("--help")
    assert result.exit_code == 0
    for verb in ("prepare", "extract-tokens", "train", "decode", "score"):
        assert verb in result.output
