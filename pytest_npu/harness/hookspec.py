"""pytest-npu's own hooks: how other plugins (baselines, history, exporters) join a run.

Registered by ``plugin.py`` in ``pytest_addhooks``. Implement them in a conftest or a plugin module;
every implementation is called (none is ``firstresult``), so several plugins can add checks and writers.
"""

from __future__ import annotations

import pytest


@pytest.hookspec
def pytest_npu_check(item, record):
    """Return extra breach rows for one test x target after the test's runs.

    ``item`` is the pytest item, ``record`` its :class:`pytest_npu.harness.session.NpuRecord`
    (metrics already aggregated over every ``npu.run`` of the test, budgets parsed). Return a list of
    :class:`pytest_npu.harness.verdict.Breach` (or ``None``/``[]``). The rows join the budget rows in
    the same failure table and fail the test unless ``--npu-no-budgets`` is given.

    Example (conftest.py)::

        from pytest_npu.harness.verdict import Breach

        def pytest_npu_check(item, record):
            if record.metrics.get("cycles", 0) % 2:
                return [Breach("cycles", None, record.metrics["cycles"], message="odd cycle count")]
            return []
    """


@pytest.hookspec
def pytest_npu_session_finish(session, records):
    """Called once on the controller (never on an xdist worker) after every record has arrived.

    ``records`` is the list of :class:`NpuRecord` of the whole run (workers included), with
    ``outcome`` and ``breaches`` filled in. Writers (baselines, history, exports) belong here; the
    plugin's own JSON/Markdown files are written just before this hook runs.
    """
