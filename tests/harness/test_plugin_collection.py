"""Plugin surface that needs no NPU run: options, markers, usage errors, target parametrisation."""

from __future__ import annotations

import pytest


def test_help_lists_every_option_in_the_npu_group(pytester):
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    assert "NPU testing (pytest-npu):" in text
    for option in ("--npu-target=NAME|PATH", "--npu-no-budgets", "--npu-json=PATH", "--npu-markdown=PATH",
                   "--npu-batch=N", "--npu-host-runs=N"):
        assert option in text, option
    for ini in ("npu_targets", "npu_json", "npu_markdown", "npu_batch", "npu_host_runs"):
        assert ini in text, ini


def test_markers_are_registered_so_strict_markers_runs_clean(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.npu_budget(latency_ms=1)
        @pytest.mark.npu_target("u55-128")
        def test_marked():
            pass
    """)
    result = pytester.runpytest("--strict-markers", "--npu-no-budgets")
    result.assert_outcomes(passed=1)
    markers = pytester.runpytest("--markers").stdout.str()
    assert "@pytest.mark.npu_budget(**limits)" in markers
    assert "@pytest.mark.npu_target(*names)" in markers


def test_unknown_budget_key_is_a_collection_error_with_a_suggestion(pytester):
    pytester.makepyfile(test_typo="""
        import pytest

        @pytest.mark.npu_budget(latncy_ms=5)
        def test_port():
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR collecting test_typo.py*",
        "BudgetUsageError: test_typo.py::test_port: npu_budget has no key 'latncy_ms'. "
        "Did you mean 'latency_ms'? Known keys: latency_ms, cycles, *",
    ])
    assert "Traceback" not in result.stdout.str()


MALFORMED = {  # marker -> what the collection error must say (one module each, one pytest run for all)
    "npu_budget(latency_ms='5')":
        "npu_budget(latency_ms='5') must be a finite number (modelled NPU latency per inference, in ms), "
        "e.g. latency_ms=1.5.",
    "npu_budget(latency_ms=True)": "npu_budget(latency_ms=True) must be a finite number *",
    "npu_budget(cosine=1.5)": "npu_budget(cosine=1.5) is outside [[]-1.0, 1.0[]]: mean per-sample cosine *",
    "npu_budget(energy_mj=-1)": "npu_budget(energy_mj=-1) is outside [[]0.0, inf[]]: *",
    "npu_budget(5)": "npu_budget takes keyword arguments only (got positional (5,)); write e.g. "
                     "@pytest.mark.npu_budget(latency_ms=5).",
    "npu_budget(compare=['latency_ms'])": "npu_budget(compare=...) must be a dict metric -> tolerance, *",
    "npu_budget(compare={'latensy_ms': '2%'})":
        "npu_budget(compare=...): no figure is called 'latensy_ms'. Did you mean 'latency_ms'? *",
    "npu_target()": "npu_target needs one or more target names or .toml paths (got ()); *",
    "npu_target(name='u55-128')": "npu_target takes target names or paths only (got keywords [[]'name'[]]); *",
}


def test_malformed_markers_name_the_test_and_the_fix(pytester):
    for index, marker in enumerate(MALFORMED):
        pytester.makepyfile(**{f"test_bad{index}": f"""
            import pytest

            @pytest.mark.{marker}
            def test_port(npu):
                pass
        """})
    result = pytester.runpytest()
    result.assert_outcomes(errors=len(MALFORMED))
    for index, message in enumerate(MALFORMED.values()):
        result.stdout.fnmatch_lines([f"*ERROR collecting test_bad{index}.py*",
                                     f"BudgetUsageError: test_bad{index}.py::test_port: {message}"])
    assert "Traceback" not in result.stdout.str()


def test_class_and_module_markers_are_validated_too(pytester):
    pytester.makepyfile(test_cls="""
        import pytest

        pytestmark = pytest.mark.npu_budget(mse=1e-3)

        @pytest.mark.npu_budget(sram_kb=10)
        class TestPort:
            def test_a(self):
                pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no key 'sram_kb'. Did you mean 'sram_kib'?*"])


def _ids(pytester, *args) -> list[str]:
    result = pytester.runpytest("--collect-only", "-q", *args)
    return [line for line in result.stdout.lines if "::" in line]


def test_targets_parametrise_from_option_ini_and_marker(pytester):
    pytester.makepyfile(test_targets="""
        import pytest

        def test_fixture(npu_target):
            assert npu_target.name

        @pytest.mark.npu_target("edge-3core", "u65-512")
        def test_marked(npu_target):
            pass

        @pytest.mark.npu_target("u55-128")
        def test_marker_with_npu_only(npu):
            pass

        def test_without_target(npu):
            pass
    """)
    assert _ids(pytester) == [
        "test_targets.py::test_fixture[u55-256]",            # the default
        "test_targets.py::test_marked[edge-3core]", "test_targets.py::test_marked[u65-512]",
        "test_targets.py::test_marker_with_npu_only[u55-128]",
        "test_targets.py::test_without_target",
    ]
    option_ids = _ids(pytester, "--npu-target", "u55-128", "--npu-target", "u65-512")
    assert option_ids[:2] == ["test_targets.py::test_fixture[u55-128]", "test_targets.py::test_fixture[u65-512]"]
    assert "test_targets.py::test_marked[edge-3core]" in option_ids        # the marker beats the option
    pytester.makeini("[pytest]\nnpu_targets = u55-128 edge-3core\n")
    assert _ids(pytester)[:2] == ["test_targets.py::test_fixture[u55-128]",
                                  "test_targets.py::test_fixture[edge-3core]"]
    assert _ids(pytester, "--npu-target=u65-512")[0] == "test_targets.py::test_fixture[u65-512]"  # option beats ini


def test_target_fixture_loads_the_target_and_a_toml_path_gets_its_stem_as_id(pytester):
    from pytest_npu import targets

    source = targets.load("u55-128").path
    (pytester.path / "my_npu.toml").write_text(source.read_text().replace('name = "u55-128"', 'name = "my-npu"'))
    pytester.makepyfile(test_path="""
        def test_fixture(npu_target):
            assert npu_target.name == "my-npu"
            assert npu_target.cores >= 1
    """)
    result = pytester.runpytest("-v", f"--npu-target={pytester.path / 'my_npu.toml'}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_fixture[[]my_npu[]] PASSED*"])


def test_unknown_targets_fail_with_the_list_of_built_ins(pytester):
    pytester.makepyfile(test_unknown="""
        import pytest

        def test_fixture(npu_target):
            pass

        @pytest.mark.npu_target("u65-521")
        def test_marked(npu_target):
            pass
    """)
    result = pytester.runpytest("--npu-target=u56-256")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --npu-target: unknown target 'u56-256' (did you mean 'u55-256'?); "
                                 "built-in targets: edge-3core, u55-128, u55-256, u65-512, or pass the path *"])
    pytester.makeini("[pytest]\nnpu_targets = missing.toml\n")
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(["ERROR: ini npu_targets: target file missing.toml does not exist*"])
    result = pytester.runpytest("--npu-target=u55-128")       # the marker's typo: that test errors
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*_ ERROR at setup of test_marked[[]u65-521[]] _*",
                                 "TargetError: unknown target 'u65-521' (did you mean 'u65-512'?)*"])
    assert "loader.py" not in result.stdout.str()


def test_bad_option_values_are_usage_errors(pytester):
    result = pytester.runpytest("--npu-batch=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--npu-batch: expected a positive integer, got '0'*"])
    pytester.makeini("[pytest]\nnpu_batch = many\n")
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(["*ini option npu_batch = 'many': expected an integer >= 1*"])


def test_report_header_names_targets_and_mode(pytester):
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest("--npu-target=u65-512", "--npu-no-budgets")
    result.stdout.fnmatch_lines(["npu: targets u65-512; budgets reported only (--npu-no-budgets); batch 64"])


def test_a_budget_without_any_run_fails_instead_of_passing_silently(pytester):
    pytester.makepyfile(test_norun="""
        import pytest

        @pytest.mark.npu_budget(latency_ms=1)
        def test_forgot_to_run(npu):
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "NPU budget not checked: test_norun.py::test_forgot_to_run has an npu_budget marker but never called "
        "npu.run(model, inputs, ...), so no figure was measured.",
        "*latency_ms  <= 1      not measured  -         the test never called npu.run",
    ])


def test_tests_without_npu_are_untouched(pytester):
    pytester.makepyfile("def test_a():\n    assert 1\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "npu summary" not in result.stdout.str()
