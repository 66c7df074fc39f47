from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
logging.getLogger().setLevel(logging.ERROR)     # onnxruntime.quantization's pre-processing advice

from models import qdq_model  # noqa: E402


@pytest.fixture(scope="session")
def models():
    return qdq_model
