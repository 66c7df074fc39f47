"""Targets that inherit: ``base = "u55-256"`` then only the keys that differ; problems still name the
file and key; ``pytest-npu targets --show`` prints the resolved file."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_npu import targets
from pytest_npu.cli import main
from pytest_npu.errors import TargetError

FAST = """
base = "u55-256"
name = "u55-256-1ghz"
description = "u55-256 clocked at 1 GHz with 1 MiB of SRAM"
clock_mhz = 1000

[memory]
sram_kib = 1024
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_child_changes_only_what_it_says(tmp_path):
    base = targets.load("u55-256")
    child = targets.load(_write(tmp_path, "fast.toml", FAST))
    assert (child.name, child.clock_mhz, child.sram_bytes) == ("u55-256-1ghz", 1000.0, 1024 * 1024)
    same = dataclasses.replace(child, name=base.name, description=base.description, clock_mhz=base.clock_mhz,
                               sram_bytes=base.sram_bytes, path=base.path)
    assert same == base                                        # every other field is the base's
    assert child.content_hash() != base.content_hash()


def test_a_table_merges_key_by_key_and_a_list_replaces(tmp_path):
    text = FAST + '\n[isa]\noperations = ["dma", "conv2d", "fully_connected"]\n'
    child = targets.load(_write(tmp_path, "small.toml", text))
    assert child.operations == frozenset({"dma", "conv2d", "fully_connected"})
    assert child.dram_bytes_per_cycle == targets.load("u55-256").dram_bytes_per_cycle   # rest of [memory]
    assert child.limits == targets.load("u55-256").limits                              # rest of [isa]


def test_chains_resolve_relative_to_the_inheriting_file(tmp_path):
    _write(tmp_path, "fast.toml", FAST)
    sub = tmp_path / "team"
    sub.mkdir()
    grandchild = targets.load(_write(sub, "dual.toml", 'base = "../fast.toml"\nname = "dual"\ncores = 2\n'))
    assert (grandchild.cores, grandchild.clock_mhz, grandchild.sram_bytes) == (2, 1000.0, 1024 * 1024)


@pytest.mark.parametrize(("text", "expected"), [
    ('base = "u55-265"\nname = "x"\n', r"base: unknown target 'u55-265' \(did you mean 'u55-256'\?\)"),
    ('base = 7\nname = "x"\n', r"base: must be a built-in target name"),
    ('base = "u55-256"\nclock_mhz = 1\n', r"name: missing; a target that inherits"),
    ('base = "u55-256"\nname = "u55-256"\n', r"name: 'u55-256' is the name of its base"),
    ('base = "u55-256"\nname = "x"\ncores = 0\n[core]\nofm_lane = 2\n',
     r"(?s)2 problems.*cores: must be at least 1.*core.ofm_lane: unknown key \(did you mean 'ofm_lanes'\?\)"
     r".*keys .*child.toml does not set come from its base 'u55-256'"),
    ('base = "missing.toml"\nname = "x"\n', r"missing.toml does not exist"),
])
def test_problems_name_the_file_and_the_key(tmp_path, text, expected):
    path = _write(tmp_path, "child.toml", text)
    with pytest.raises(TargetError, match=expected) as caught:
        targets.load(path)
    assert str(path) in str(caught.value) or "missing.toml" in str(caught.value)


def test_a_broken_base_is_reported_against_the_base(tmp_path):
    _write(tmp_path, "broken.toml", 'base = "u55-256"\nname = "broken"\nclock_mhz = -5\n')
    child = _write(tmp_path, "child.toml", 'base = "broken.toml"\nname = "child"\n')
    with pytest.raises(TargetError, match=r"broken.toml has 1 problem:\n  - clock_mhz: must be greater than 0"):
        targets.load(child)


def test_a_cycle_is_refused(tmp_path):
    _write(tmp_path, "a.toml", 'base = "b.toml"\nname = "a"\n')
    _write(tmp_path, "b.toml", 'base = "a.toml"\nname = "b"\n')
    with pytest.raises(TargetError, match="break the cycle"):
        targets.load(tmp_path / "a.toml")


def test_show_prints_the_resolved_file_which_loads_to_the_same_target(tmp_path, capsys):
    path = _write(tmp_path, "fast.toml", FAST)
    assert main(["targets", "--show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("# u55-256-1ghz from fast.toml, resolved") and "base" not in shown.split("\n", 1)[1]
    assert "clock_mhz = 1000.0" in shown and "[energy]" in shown
    again = targets.load(_write(tmp_path, "resolved.toml", shown))
    assert again.content_hash() == targets.load(path).content_hash()
    assert main(["targets", "--show", "u55-128"]) == 0
    assert targets.parse(capsys.readouterr().out).content_hash() == targets.load("u55-128").content_hash()
