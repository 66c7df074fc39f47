"""Unit tests of the baseline file format (no pytest run inside; tolerances: test_baseline_tolerances.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu.errors import BaselineError
from pytest_npu.harness import baseline as bl


@settings(max_examples=40, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_normalised_floats_are_stable_and_close(value):
    once = bl.normalise(value)
    assert bl.normalise(once) == once                    # idempotent: a re-record changes nothing
    assert json.loads(json.dumps(once)) == once          # survives the file
    assert math.isclose(once, value, rel_tol=1e-11, abs_tol=0)


def test_normalise_numpy_scalars_and_non_finite():
    assert bl.normalise({"a": np.int64(3), "b": np.float32(0.1), "c": float("inf")}) == \
        {"a": 3, "b": 0.100000001490, "c": "inf"}
    assert type(bl.normalise(np.int32(7))) is int


def _sample_file(tmp_path):
    baseline = bl.BaselineFile(tmp_path / "__npu__" / "test_m.json", "tests/test_m.py")
    baseline.set_entry("test_b[u55-256]", "u55-256", {"cycles": 1200, "latency_ms": 0.0024, "mse": 1.25e-05},
                       {"compiler_version": "0.1.0", "model_sha256": "ab" * 32})
    baseline.set_entry("TestA.test_a", "edge-3core", {"energy_mj": 0.01 + 0.02}, {"compiler_version": "0.1.0"})
    return baseline


def test_counts_are_stored_as_integers():
    baseline = bl.BaselineFile(bl.Path("x.json"), "m.py")
    baseline.set_entry("t", "u55", {"cycles": 8599.0, "dram_read_bytes": 12.0, "latency_ms": 2.0}, {})
    assert baseline.tests["t"]["u55"]["metrics"] == {"cycles": 8599, "dram_read_bytes": 12, "latency_ms": 2.0}
    assert '"cycles": 8599,' in baseline.dumps()


def test_file_format_sorted_versioned_and_round_trips(tmp_path):
    baseline = _sample_file(tmp_path)
    assert bl.save_baseline(baseline) is True
    text = baseline.path.read_text()
    assert text.endswith("}\n") and '"version": 1' in text and '"format": "pytest-npu-baseline"' in text
    assert text.index('"TestA.test_a"') < text.index('"test_b[u55-256]"')       # sorted keys
    assert '"energy_mj": 0.03' in text                                         # 0.030000000000000002 rounded
    again = bl.load_baseline(baseline.path)
    assert again.tests == baseline.tests and again.module == "tests/test_m.py"
    assert bl.save_baseline(again) is False                                    # nothing moved: no write
    assert baseline.path.read_text() == text


def test_one_moved_number_is_a_one_line_diff(tmp_path):
    baseline = _sample_file(tmp_path)
    bl.save_baseline(baseline)
    before = baseline.path.read_text().splitlines()
    baseline.set_entry("test_b[u55-256]", "u55-256", {"cycles": 1300, "latency_ms": 0.0024, "mse": 1.25e-05},
                       {"compiler_version": "0.1.0", "model_sha256": "ab" * 32})
    bl.save_baseline(baseline)
    after = baseline.path.read_text().splitlines()
    assert len(before) == len(after)
    assert [(a, b) for a, b in zip(before, after) if a != b] == [('          "cycles": 1200,', '          "cycles": 1300,')]


def _entry(metrics: dict, provenance: object = None) -> str:
    entry: dict = {"metrics": metrics, **({"provenance": provenance} if provenance is not None else {})}
    return json.dumps({"format": "pytest-npu-baseline", "version": 1, "tests": {"t": {"u55": entry}}})


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "unreadable"),
    ('{"format": "something-else", "version": 1, "tests": {}}', "not a pytest-npu baseline"),
    ('{"format": "pytest-npu-baseline", "version": 99, "tests": {}}', "version 99"),
    ('{"format": "pytest-npu-baseline", "version": 1, "tests": {"t": {"u55": 3}}}', "malformed"),
    ('[1, 2]', "not a pytest-npu baseline"),
    ('{"format": "pytest-npu-baseline", "version": 1, "tests": {"t": {"u55": {"metrics": {"cycles": "many"}}}}}',
     "t on u55: metric cycles = 'many' is not a number"),
    # stored data a hand edit or another tool could leave: each named with file, entry and metric
    (_entry({"mse": "NaN"}), "t on u55: metric mse = 'NaN' is not a number"),
    (_entry({"mse": "nan"}), "t on u55: metric mse = 'nan' is not a number"),
    (_entry({"mse": 1e308}), r"t on u55: metric mse = 1e\+308 is outside the range any figure can have"),
    (_entry({"mse": "inf"}), "t on u55: metric mse = 'inf' is infinite, which only snr_db, sqnr_db can be"),
    (_entry({"cycles": 10.5}), "metric cycles = 10.5 is not a whole number"),
    (_entry({"cosine": 1.5}), r"metric cosine = 1.5 is outside \[-1, 1\]"),
    (_entry({"latency_ms": -0.1}), r"metric latency_ms = -0.1 is outside \[0, inf\]"),
    (_entry({"mse": True}), "metric mse = True is not a number"),
    (_entry({"mse": 0.1}, provenance=7), "t on u55 has a provenance of type int"),
    (_entry({"mse": 0.1}, provenance=["a"]), "t on u55 has a provenance of type list"),
])
def test_corrupt_or_too_new_file_is_named_and_left_untouched(tmp_path, content, message):
    path = tmp_path / "test_x.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=message) as caught:
        bl.load_baseline(path)
    assert str(path) in str(caught.value)
    assert path.read_text() == content


def test_missing_file_is_an_empty_baseline_and_empty_file_is_deleted(tmp_path):
    baseline = bl.load_baseline(tmp_path / "nope.json", "tests/nope.py")
    assert baseline.tests == {} and bl.save_baseline(baseline) is False
    full = _sample_file(tmp_path)
    bl.save_baseline(full)
    full.remove("test_b[u55-256]")
    full.remove("TestA.test_a", "edge-3core")
    assert bl.save_baseline(full) is True and not full.path.exists()


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "deep" / "dir" / "f.json"
    bl.atomic_write_text(path, "one\n")
    bl.atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["f.json"]


def test_atomic_write_failure_is_a_baseline_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BaselineError, match="cannot write"):
        bl.atomic_write_text(blocker / "sub" / "f.json", "{}")


def test_node_ids_become_syrupy_style_keys():
    assert bl.split_nodeid("tests/t.py::test_a") == ("tests/t.py", "test_a")
    assert bl.split_nodeid("tests/t.py::TestA::test_b[x::y-u55]") == ("tests/t.py", "TestA.test_b[x::y-u55]")
    with pytest.raises(BaselineError, match="no test part"):
        bl.split_nodeid("tests/t.py")


def test_paths_default_beside_module_or_mirrored_under_a_directory(tmp_path):
    default = bl.baseline_path("tests/sub/test_m.py", tmp_path)
    assert default == tmp_path / "tests/sub/__npu__/test_m.json"
    assert bl.module_of_baseline(default, tmp_path) == tmp_path / "tests/sub/test_m.py"
    custom = bl.baseline_path("tests/sub/test_m.py", tmp_path, "baselines")
    assert custom == tmp_path / "baselines/tests/sub/test_m.json"
    assert bl.module_of_baseline(custom, tmp_path, "baselines") == tmp_path / "tests/sub/test_m.py"


def test_provenance_changes_name_the_key():
    lines = bl.provenance_changes({"compiler_version": "0.2.0", "model_sha256": "aa"},
                                  {"compiler_version": "0.1.0", "model_sha256": "aa", "gone": 1})
    assert lines == ["compiler_version: 0.1.0 -> 0.2.0", "gone: 1 -> null"]


def test_derived_cache_key_is_named_only_when_nothing_else_explains_it():
    stored = {"cache_key": "k1", "compiler_version": "0.1.0"}
    assert bl.provenance_changes({"cache_key": "k2", "compiler_version": "0.2.0"}, stored) == \
        ["compiler_version: 0.1.0 -> 0.2.0"]
    assert bl.provenance_changes({"cache_key": "k2", "compiler_version": "0.1.0"}, stored) == ["cache_key: k1 -> k2"]


def test_figures_print_as_the_file_holds_them():
    assert bl.figure_text("cycles", 10007.0) == "10007"
    assert bl.figure_text("latency_ms", 0.020014000000000001) == "0.020014"
    assert bl.figure_text("sram_kib", 8.0) == "8"
    assert bl.figure_text("mse", None) == "-"


def test_nan_figures_are_not_recorded():
    baseline = bl.BaselineFile(bl.Path("x.json"), "m.py")
    baseline.set_entry("t", "u55", {"cycles": 10.0, "mse": math.nan, "sqnr_db": math.inf}, {})
    assert baseline.tests["t"]["u55"]["metrics"] == {"cycles": 10, "sqnr_db": "inf"}


def test_files_honour_the_umask_and_keep_an_existing_mode(tmp_path):
    import os

    previous = os.umask(0o027)
    try:
        bl.atomic_write_text(tmp_path / "new.json", "{}\n")
        assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o640
        bl.append_text(tmp_path / "summary.md", "one\n")
        assert (tmp_path / "summary.md").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(previous)
    (tmp_path / "new.json").chmod(0o604)
    bl.atomic_write_text(tmp_path / "new.json", "{ }\n")
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o604


def test_append_keeps_what_was_there_and_separates_summaries(tmp_path):
    path = tmp_path / "step_summary.md"
    path.write_text("## an earlier step\n")
    bl.append_text(path, "## pytest-npu\n")
    bl.append_text(path, "## pytest-npu\n")
    assert path.read_text() == "## an earlier step\n\n## pytest-npu\n\n## pytest-npu\n"
