"""content_hash identifies a target's figures: stable, path-independent, sensitive to any change."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu.errors import TargetError
from pytest_npu.npu.isa import OPERATIONS
from pytest_npu.targets import MacArray, available, from_dict, load, parse, to_toml


@pytest.mark.parametrize("name", available())
def test_to_toml_round_trips_every_field(name):
    target = load(name)
    again = parse(to_toml(target))
    assert again == target
    assert again.content_hash() == target.content_hash()


def test_hash_is_stable_and_independent_of_the_path(tmp_path):
    original = load("u65-512")
    copy = tmp_path / "elsewhere.toml"
    copy.write_text(Path(original.path).read_text())
    assert load(copy).content_hash() == original.content_hash()
    assert len(original.content_hash()) == 16


def test_builtin_hashes_differ():
    hashes = {load(name).content_hash() for name in available()}
    assert len(hashes) == len(available())


@pytest.mark.parametrize(("line", "changed"), [
    ("dram_bytes_per_cycle = 3.75", "dram_bytes_per_cycle = 4"),
    ("mac_int8_pj = 0.0843", "mac_int8_pj = 0.0844"),
    ('rounding = "tflite"', 'rounding = "double"'),
    ("max_stride = 3", "max_stride = 2"),
])
def test_hash_changes_when_a_figure_in_the_file_changes(tmp_path, line, changed):
    text = Path(load("u65-512").path).read_text()
    assert line in text
    edited = tmp_path / "edited.toml"
    edited.write_text(text.replace(line, changed, 1))
    assert load(edited).content_hash() != load("u65-512").content_hash()


def test_hash_changes_with_replace():
    target = load("u55-128")
    assert dataclasses.replace(target, sram_bytes=32 * 1024).content_hash() != target.content_hash()
    assert dataclasses.replace(target, operations=target.operations | {"matmul"}).content_hash() \
        != target.content_hash()


@settings(max_examples=40, deadline=None)
@given(sram_bytes=st.integers(1, 2**22), dram_bytes=st.integers(1, 2**26),
       clock_mhz=st.floats(1, 5000), cores=st.integers(1, 16),
       lanes=st.tuples(st.integers(1, 64), st.integers(1, 64), st.integers(1, 16)),
       operations=st.sets(st.sampled_from(sorted(OPERATIONS - {"dma"}))),
       static_mw=st.floats(0, 1e4), rounding=st.sampled_from(["single", "double"]))
def test_any_valid_target_survives_to_toml_and_parse(sram_bytes, dram_bytes, clock_mhz, cores, lanes,
                                                     operations, static_mw, rounding):
    base = load("u55-128")
    target = dataclasses.replace(
        base, sram_bytes=sram_bytes, dram_bytes=dram_bytes, clock_mhz=clock_mhz, cores=cores,
        mac=MacArray(*lanes), operations=frozenset(operations | {"dma"}), rounding=rounding,
        energy=dataclasses.replace(base.energy, static_mw=static_mw), path=None,
        blocks=None if lanes[2] != base.mac.pixel_lanes else base.blocks)
    again = parse(to_toml(target))
    assert again == target
    assert again.content_hash() == target.content_hash()


def test_from_dict_refuses_a_non_mapping():
    with pytest.raises(TargetError, match="must be a mapping"):
        from_dict(["not", "a", "table"], source="list")  # type: ignore[arg-type]
