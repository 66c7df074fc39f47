"""pytest-npu: compress, compile and emulate neural networks on NPU targets, and test the port."""
__version__ = "0.1.0"
