"""``pytest-npu history`` (table, views, HTML, the regression gate, merge) and ``pytest-npu compare``."""

from __future__ import annotations

import pytest
from history_helpers import make_record, make_run, record

from pytest_npu import cli
from pytest_npu.harness import history


@pytest.fixture
def releases(history_url):
    record(history_url, release="v1.0", cycles=800, latency_ms=0.0016, sqnr_db=31.5, started="2026-11-25T10:00:00+00:00")
    record(history_url, cycles=9999, started="2026-11-25T10:30:00+00:00")                  # a developer's run
    record(history_url, release="v1.1", cycles=760, latency_ms=0.00152, sqnr_db=31.5, started="2026-11-25T11:00:00+00:00")
    record(history_url, release="v1.2", cycles=820, latency_ms=0.00164, sqnr_db=30.0, started="2026-11-25T12:00:00+00:00")
    return history_url


def test_history_table_flags_regressions_between_releases(releases, capsys):
    assert cli.main(["history", "--db", releases, "--target", "u55-256"]) == 0
    out = capsys.readouterr().out
    assert "REGRESSED vs v1.1" in out and "improved" in out and "9999" not in out
    assert "3 releases, 3 regressions between consecutive ones (1 other run not shown: --runs ci or --runs all)" in out
    lines = [line for line in out.splitlines() if " cycles " in line]
    assert [line.split()[0] for line in lines] == ["tests/test_m.py::test_port"] * 3      # the node id, no target
    assert [line.split()[3] for line in lines] == ["v1.0", "v1.1", "v1.2"]
    assert cli.main(["history", "--db", releases, "--target", "u55-256", "--metric", "cycles", "--runs", "all"]) == 0
    assert [line.split()[3] for line in capsys.readouterr().out.splitlines() if " cycles " in line] == [
        "v1.0", "run", "v1.1", "v1.2"]                      # "run 2": the local run, asked for
    assert cli.main(["history", "--db", releases, "--test", "test_nothing*"]) == 0
    assert "no recorded figures" in capsys.readouterr().out


def test_fail_on_regression_gates_the_latest_release(releases, capsys):
    assert cli.main(["history", "--db", releases, "--fail-on-regression"]) == 1
    assert "FAILED: v1.2 regressed 6 figures against the release before it" in capsys.readouterr().out
    assert cli.main(["history", "--db", releases, "--fail-on-regression", "--last", "2", "--metric", "cycles",
                     "--fail", "cycles:10%"]) == 0
    assert "ok: v1.2 did not regress" in capsys.readouterr().out
    record(releases, release="v1.3", cycles=820, latency_ms=0.00164, sqnr_db=30.0, started="2026-11-25T13:00:00+00:00")
    assert cli.main(["history", "--db", releases, "--fail-on-regression"]) == 0


def test_an_incomplete_run_is_shown_as_such_and_fails_the_gates(releases, capsys):
    record(releases, release="v1.3", key="ci-13", shard=2, shards=2, targets=("u55-256",), cycles=820,
           latency_ms=0.00164, sqnr_db=30.0, started="2026-11-25T13:00:00+00:00")
    assert cli.main(["history", "--db", releases, "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "v1.3 (incomplete 1/2)" in out
    assert "v1.3 (run #5) is incomplete: 1 of 2 shards recorded (missing shard 1): its missing tests are not " \
           "regressions" in out
    assert "FAILED: the latest, v1.3, is incomplete" in out
    assert cli.main(["compare", "v1.2", "v1.3", "--db", releases]) == 1
    out = capsys.readouterr().out
    assert "3 unrecorded" in out and "gone" not in out and "FAILED: v1.3 (run #5) is incomplete" in out


def test_history_html_page(releases, tmp_path, capsys):
    pytest.importorskip("plotly")
    page = tmp_path / "report.html"
    twin = make_record(module="tests/test_two.py", cycles=3000)           # the same test name, another module
    history.record_run(releases, make_run(release="v1.3", started="2026-11-25T13:00:00+00:00"),
                       [make_record(cycles=820, latency_ms=0.00164, sqnr_db=30.0), twin])
    assert cli.main(["history", "--db", releases, "--metric", "cycles", "--html", str(page)]) == 0
    text = page.read_text()
    assert "regressed" in text and "conv1" in text
    assert "4 releases/commits (v1.0, v1.1, v1.2, v1.3)" in text                 # in time order
    for module in ("test_m", "test_two"):                                # two charts, not one series
        assert text.count(f"<figcaption><b>tests/{module}.py::test_port</b> on u55-256") == 1


def test_compare_exits_non_zero_on_regression_only(releases, capsys):
    assert cli.main(["compare", "v1.0", "v1.1", "--db", releases]) == 0
    assert cli.main(["compare", "v1.1", "v1.2", "--db", releases]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out and "FAILED" in out and "tests/test_m.py::test_port" in out
    # cycles +8 % is inside a 10 % rule; sqnr_db then still gates with its default, so '*:off' first
    assert cli.main(["compare", "v1.1", "v1.2", "--db", releases, "--fail", "*:off", "--fail", "cycles:10%"]) == 0
    assert "changed" in capsys.readouterr().out
    assert cli.main(["compare", "v1.1", "v1.2", "--db", releases, "--fail", "*:off", "--fail", "cycles:5%"]) == 1


def test_compare_bad_input_is_exit_2_with_the_reason(releases, tmp_path, capsys):
    assert cli.main(["compare", "v1.0", "v7", "--db", releases]) == 2
    assert "no run matches 'v7'" in capsys.readouterr().err
    assert cli.main(["compare", "a", "b", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no history database" in capsys.readouterr().err
    assert cli.main(["compare", "v1.0", "v1.1", "--db", releases, "--fail", "cycles"]) == 2
    assert "METRIC:AMOUNT" in capsys.readouterr().err


def test_history_merge_command(history_url, tmp_path, capsys):
    shards = [str(tmp_path / f"s{k}.sqlite") for k in (1, 2)]
    for shard, path in enumerate(shards, start=1):
        record(path, key="r", shard=shard, shards=2, targets=(f"t{shard}",))
    assert cli.main(["history", "merge", *shards, "--into", history_url]) == 0
    assert capsys.readouterr().out.strip() == ("merged 2 histories: 2 runs (1 new), records 2 added, 0 replaced by a "
                                               "newer recording, 0 already there; 2 shards added")
    assert cli.main(["history", "merge", shards[0], "--into", shards[0]]) == 2
    assert "into itself" in capsys.readouterr().err
