"""Reference models: a digits CNN trained on real data, and MLPerf-Tiny-shaped networks.

Each model module offers ``build()``, ``load()``, ``export_onnx(...)``, ``calib_data()``,
``test_data()`` and ``input_shape``.  Only ``digits_cnn`` is trained (on scikit-learn's bundled
digits); the MLPerf Tiny structures (no data sets ship anywhere here) have seeded weights and
seeded inputs.  ``onnx_for(name, precision)`` exports/quantises once per process and caches.
"""

from __future__ import annotations

import atexit
import importlib
import shutil
import tempfile
import threading
from pathlib import Path
from types import ModuleType

NAMES = ("digits_cnn", "resnet8", "ds_cnn", "mobilenet_v1", "autoencoder", "transformer_block")
_cache: dict[tuple[str, str | None, str], Path] = {}
_lock = threading.RLock()          # onnx_for recurses (quantised -> float)
_default_dir: Path | None = None


def get(name: str) -> ModuleType:
    """The module of reference model ``name`` (imported on first use: torch is heavy)."""
    if name not in NAMES:
        import difflib

        hint = difflib.get_close_matches(name, NAMES, n=1)
        raise KeyError(f"no reference model {name!r}; available: {', '.join(NAMES)}"
                       + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    return importlib.import_module(f"{__name__}.{name}")


def onnx_for(name: str, precision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """Path of ``name`` as float ONNX (``precision=None``) or quantised QDQ ("int8", "int16", "a16w8").

    Exported and quantised (minmax, per-channel, calibrated on ``calib_data()``) once per process
    and directory; the shipped digits float ONNX is returned as is.
    """
    global _default_dir
    with _lock:
        if cache_dir is None:
            if _default_dir is None:
                _default_dir = Path(tempfile.mkdtemp(prefix="pytest-npu-models-"))
                atexit.register(shutil.rmtree, _default_dir, True)
            cache_dir = _default_dir
        cache_dir = Path(cache_dir)
        key = (name, precision, str(cache_dir))
        hit = _cache.get(key)
        if hit is not None and hit.is_file():
            return hit
        module = get(name)
        if precision is None:
            path = module.onnx_path() if hasattr(module, "onnx_path") else \
                module.export_onnx(cache_dir / f"{name}.onnx")
        else:
            from pytest_npu.compress import quantize

            path = quantize(onnx_for(name, None, cache_dir), precision, calibration=module.calib_data(),
                            output=cache_dir / f"{name}.{precision}.onnx")
        _cache[key] = Path(path)
        return Path(path)
