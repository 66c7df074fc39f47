"""``python -m pytest_npu.casestudy [--quick] [--out DIR] ...``: the case study without the CLI."""

from __future__ import annotations

import sys

from .run import main

sys.exit(main())
