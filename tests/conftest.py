"""Suite-wide settings: under CI (``CI`` set, as .ci/run does) Hypothesis is derandomised, so a
merge gate never fails on an example no earlier run saw; locally it keeps exploring. Run keys of
the history never come from the CI's environment. And ``without_plotly``, for the pages' behaviour
in an install without the ``html`` extra."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("pytest-npu-ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("pytest-npu-ci")


@pytest.fixture(autouse=True)
def _no_ci_run_key(monkeypatch):
    """Under GitHub Actions every pytest run would share the job's run key (GITHUB_RUN_ID) in the
    history; the tests (and the docs' walk-throughs) set the run keys they mean."""
    for name in ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def without_plotly(monkeypatch):
    """An interpreter where ``import plotly`` fails, as in an install without the ``html`` extra."""
    import builtins

    real_import = builtins.__import__

    def no_plotly(name, *args, **kwargs):
        if name.startswith("plotly"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_plotly)
