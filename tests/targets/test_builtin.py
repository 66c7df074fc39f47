"""The shipped targets load, follow their stated public figures, and document every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_npu.npu.isa import OPERATIONS
from pytest_npu.targets import available, load
from pytest_npu.targets.loader import SCHEMA

BUILTINS = ["edge-3core", "u55-128", "u55-256", "u65-512"]


def test_available_lists_the_builtins_sorted():
    assert available() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_and_is_consistent(name):
    target = load(name)
    assert target.name == name == Path(target.path).stem
    assert target.mac.macs_per_cycle * target.cores == target.macs_per_cycle
    assert target.operations <= OPERATIONS and "dma" in target.operations
    assert target.dtypes == {"int8", "int16"}
    assert target.sources and "not" in target.model_note  # says it is not the vendor's silicon
    assert target.dram_bytes >= 8 * 2**20  # room for the MLPerf-Tiny models and their activations


def test_builtins_are_cached_but_files_are_reread(tmp_path):
    assert load("u55-256") is load("u55-256")
    copy = tmp_path / "copy.toml"
    copy.write_text(Path(load("u55-256").path).read_text())
    assert load(copy) is not load(copy)
    assert load(copy) == load("u55-256")


@pytest.mark.parametrize(("name", "macs", "cores", "sram_kib"), [
    ("u55-128", 128, 1, 256),
    ("u55-256", 256, 1, 512),
    ("u65-512", 512, 2, 384),
    ("edge-3core", 3072, 3, 1152),
])
def test_shapes_follow_the_public_figures(name, macs, cores, sram_kib):
    target = load(name)
    assert (target.macs_per_cycle, target.cores, target.sram_bytes // 1024) == (macs, cores, sram_kib)


def test_edge_3core_peak_matches_the_6_tops_headline():
    target = load("edge-3core")
    tops = 2 * target.macs_per_cycle * target.clock_mhz * 1e6 / 1e12
    assert 5.9 < tops < 6.3


def test_some_target_lacks_an_operation_so_host_fallback_is_exercised():
    lacking = {name: OPERATIONS - load(name).operations for name in BUILTINS}
    assert lacking["u55-128"] == lacking["u55-256"] == {"matmul"}
    assert not lacking["u65-512"] and not lacking["edge-3core"]


@pytest.mark.parametrize("name", BUILTINS)
def test_static_power_is_ten_percent_of_the_tables_peak_dynamic_power(name):
    """The files claim static_mw = 10% of (peak MACs + one SRAM port per core) at the clock."""
    t = load(name)
    peak_pj_per_cycle = (t.macs_per_cycle * t.energy.mac_int8_pj
                         + t.cores * t.sram_bytes_per_cycle * t.energy.sram_read_pj_per_byte)
    peak_mw = peak_pj_per_cycle * t.clock_mhz * 1e6 * 1e-12 * 1e3
    assert t.energy.static_mw == pytest.approx(0.1 * peak_mw, rel=0.01)


@pytest.mark.parametrize("name", BUILTINS)
def test_every_key_in_a_builtin_file_is_documented(name):
    """Each key line carries a comment, or a comment block stands directly above it."""
    lines = Path(load(name).path).read_text().splitlines()
    known = {key for keys in SCHEMA.values() for key in keys}
    for number, line in enumerate(lines):
        match = re.match(r"(\w+) = ", line)
        if not match:
            continue
        assert match.group(1) in known
        documented = "#" in line.split("=", 1)[1] or lines[number - 1].startswith("#")
        long_value = line.rstrip().endswith(("[", ",")) or match.group(1) in ("sources", "model_note",
                                                                               "description")
        assert documented or long_value, f"{name}.toml line {number + 1} has no comment: {line}"
