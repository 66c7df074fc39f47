"""Suite-wide settings: under CI (``CI`` set, as .ci/run does) Hypothesis is derandomised, so a
merge gate never fails on an example no earlier run saw; locally it keeps exploring."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("pytest-npu-ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("pytest-npu-ci")
