"""How figures read in tables: exact integers with separators, floats never in exponent notation,
shapes as 8x8x1, empty cells for missing figures, and terminal tables fitted to a width."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu import tables


def test_cells_read_like_a_person_writes_them():
    assert tables.integer(10010) == "10,010" and tables.integer(7703.0) == "7,703"
    assert tables.decimal(4.73841e-05) == "0.0000474" and tables.decimal(0.0003577, 4) == "0.0003577"
    assert tables.decimal(1.001e4, 4) == "10,010" and tables.decimal(12.5) == "12.5"
    assert tables.decimal(float("inf")) == "inf" and tables.decimal(float("nan")) == ""
    assert tables.percent(0.7512) == "75.1" and tables.percent(None) == ""
    assert tables.shape([8, 8, 1]) == "8x8x1" and tables.shape([[8, 8, 1], [10]]) == "8x8x1, 10"
    assert tables.shape(()) == "scalar" and tables.shapes([]) == "" and tables.shapes([[], [4]]) == "scalar, 4"
    assert [tables.cell(v) for v in (None, 7703, 0.5, [4, 4], "conv", True)] == [
        "", "7,703", "0.5", "4x4", "conv", "yes"]


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False).filter(lambda v: v == 0 or abs(v) > 1e-12),
       st.integers(min_value=1, max_value=6))
def test_decimal_is_positional_and_keeps_its_digits(value, digits):
    text = tables.decimal(value, digits)
    assert "e" not in text and "None" not in text
    back = float(text.replace(",", ""))
    assert math.isclose(back, value, rel_tol=10 ** (1 - digits), abs_tol=1e-300)


def test_fit_leaves_out_columns_in_the_order_given_and_says_so():
    headers = ["layer", "cycles", "MACs", "shape"]
    rows = [["node_Conv_19", "896", "9,216", "8x8x16"], ["node_linear", "1,728", "1,280", "10"]]
    whole, dropped = tables.fit(headers, rows, None, right=[False, True, True, False])
    assert dropped == [] and whole.splitlines()[2].endswith("8x8x16")
    narrow, dropped = tables.fit(headers, rows, 24, drop_order=["shape", "MACs"])
    assert dropped == ["shape", "MACs"] and tables.widest(narrow) <= 24
    assert narrow.splitlines()[0].split() == ["layer", "cycles"]
    _, dropped = tables.fit(headers, rows, 30, drop_order=[])              # nothing may go: it stays wide
    assert dropped == []
    note = tables.left_out_note(["shape", "MACs"], "--csv FILE writes every column", 40)
    assert all(len(line) <= 40 for line in note.splitlines()) and "shape, MACs" in note.replace("\n", " ")


def test_target_parameters_leave_the_test_name_where_a_column_shows_the_target():
    assert tables.without_target("t.py::test_port[u55-256]", "u55-256") == "t.py::test_port"
    assert tables.without_target("t.py::test_port[int8-u55-256]", "u55-256") == "t.py::test_port[int8]"
    assert tables.without_target("t.py::test_port[int8]", "u55-256") == "t.py::test_port[int8]"
