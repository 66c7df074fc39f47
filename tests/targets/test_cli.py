"""``pytest-npu targets``: the table and the detail view show figures computed from the files."""

from __future__ import annotations

import pytest

from pytest_npu.cli import main
from pytest_npu.targets import available, load


def test_table_lists_every_builtin_with_computed_peak(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in available():
        assert name in out
    assert "6,144" in out  # edge-3core: 2 x 3072 MACs x 1000 MHz / 1e3 GOPS
    assert "128" in out and "matmul" in out  # u55s run matmul on the host


@pytest.mark.parametrize("name", available())
def test_details_of_one_target(capsys, name):
    assert main(["targets", name]) == 0
    out = capsys.readouterr().out
    target = load(name)
    assert target.content_hash() in out
    assert f"{target.macs_per_cycle} MACs/cycle" in out
    assert target.sources[0] in out and target.model_note in out


def test_details_of_a_file(capsys):
    path = load("u55-256").path
    assert main(["targets", str(path)]) == 0
    assert "u55-256" in capsys.readouterr().out


def test_unknown_target_exits_2_with_the_list(capsys):
    assert main(["targets", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown target 'nope'" in err and "u65-512" in err
