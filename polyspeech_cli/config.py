"""Typed configs: YAML files loaded into dataclasses, with strict key checking.

A misspelt key must not be silently ignored (the user would train with the default and never
know), so an unknown key is an error that names it and suggests the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from polyspeech_cli.errors import PolyspeechError

T = TypeVar("T")


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"did you mean '{match[0]}'?" if match else f"valid keys: {', '.join(sorted(valid))}"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one YAML value against a dataclass field type (nested dataclasses too)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise PolyspeechError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where) if len(args) == 1 else value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise PolyspeechError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise PolyspeechError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float:
        # YAML 1.1 (PyYAML) reads `3e-3` (no dot) as a string: take it as the number it spells.
        try:
            if isinstance(value, str):
                return float(value)
        except ValueError:
            pass
        raise PolyspeechError(f"{where}: expected a number, got {value!r}")
    if tp in (int, str, bool) and not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise PolyspeechError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from a mapping; unknown keys raise with a spelling suggestion."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise PolyspeechError(f"{where}: unknown key '{key}', {_closest(key, list(fields))}")
        kwargs[key] = _coerce(value, hints[key], f"{where}: key '{key}'")
    return cls(**kwargs)


def load_config(path: Path | str, cls: type[T], overrides: dict[str, Any] | None = None) -> T:
    """Load YAML file `path` into dataclass `cls`, then apply `overrides` (e.g. from CLI flags)."""
    path = Path(path)
    if not path.is_file():
        raise PolyspeechError(f"config file not found: {path} (pass an existing YAML file, e.g. from conf/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise PolyspeechError(f"{path}: not valid UTF-8 YAML ({str(e).splitlines()[0]}); fix the syntax") from e
    if not isinstance(data, dict):
        raise PolyspeechError(f"{path}: top level must be a mapping of key: value")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(cls, data, where=str(path))


def to_dict(config: Any) -> dict[str, Any]:
    """A plain-dict copy of a config dataclass (for writing it next to an experiment's outputs)."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: Path) -> None:
    """Write a config dataclass as YAML, atomically."""
    from polyspeech_cli.fileio import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True))
