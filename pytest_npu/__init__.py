"""pytest-npu: compress, compile and emulate neural networks on NPU targets, and test the port."""
__version__ = "0.1.0"


def __getattr__(name: str):
    # ``pytest_npu.compile`` without importing onnx (and the compiler) at ``import pytest_npu``
    if name == "compile":
        from .compiler import compile
        return compile
    raise AttributeError(f"module 'pytest_npu' has no attribute {name!r}")
