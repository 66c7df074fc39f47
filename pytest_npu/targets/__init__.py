"""NPU targets: built-in TOML descriptions and user files, validated into :class:`Target`.

``load("u55-256")`` returns a built-in (cached: targets are frozen, so sharing is safe);
``load("my_npu.toml")`` or ``load(Path(...))`` reads a user file on every call, so edits show up.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import TargetError
from .loader import did_you_mean, from_dict, load_file, parse, to_toml
from .model import Energy, Limits, MacArray, Target

__all__ = ["Energy", "Limits", "MacArray", "Target", "available", "from_dict", "load", "parse",
           "to_toml"]


def _builtin_dir():
    return resources.files(__package__) / "builtin"


@lru_cache(maxsize=1)
def _builtin_names() -> tuple[str, ...]:
    return tuple(sorted(entry.name[: -len(".toml")] for entry in _builtin_dir().iterdir()
                        if entry.name.endswith(".toml")))


def available() -> list[str]:
    """Names of the built-in targets, sorted."""
    return list(_builtin_names())


@lru_cache(maxsize=32)
def _load_builtin(name: str) -> Target:
    entry = _builtin_dir() / f"{name}.toml"
    path = Path(str(entry))
    return parse(entry.read_text(encoding="utf-8"), source=str(path), path=path)


def _looks_like_path(text: str) -> bool:
    return text.endswith(".toml") or "/" in text or "\\" in text


def load(name_or_path: str | os.PathLike[str] | Target) -> Target:
    """A built-in by name, a TOML file by path (str or any path-like), or a Target unchanged."""
    if isinstance(name_or_path, Target):
        return name_or_path
    if isinstance(name_or_path, os.PathLike):
        return load_file(Path(name_or_path))
    if not isinstance(name_or_path, str):
        raise TargetError(f"a target is a built-in name or a .toml path, got {type(name_or_path).__name__} "
                          f"{name_or_path!r}; built-ins: {', '.join(available())}")
    if name_or_path in _builtin_names():
        return _load_builtin(name_or_path)
    if _looks_like_path(name_or_path) or Path(name_or_path).is_file():
        return load_file(Path(name_or_path))
    raise TargetError(f"unknown target {name_or_path!r}{did_you_mean(name_or_path, available())}; "
                      f"built-in targets: {', '.join(available())}, or pass the path of a .toml file")
