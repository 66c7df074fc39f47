"""pytest entry point (``pytest11: npu``): wires pytest hooks to the harness; no logic here."""

from __future__ import annotations


def pytest_addhooks(pluginmanager):
    from . import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_configure(config):
    config.addinivalue_line("markers", "npu_budget(**limits): fail the test when a modelled NPU figure exceeds its limit")
    config.addinivalue_line("markers", "npu_target(*names): run the test once per named NPU target")
