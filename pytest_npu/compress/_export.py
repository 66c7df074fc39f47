"""Torch -> ONNX export the way every stage downstream expects it.

One helper so every model (reference or user) is exported identically: the dynamo exporter,
one self-contained file (``external_data=False``; tests copy the .onnx alone), a dynamic batch axis,
and opset 21 so int16 QDQ quantisation needs no silent opset upgrade.  The exporter is chatty
(progress lines on stdout, torchvision-not-installed log lines, a LeafSpec FutureWarning): all of
that is swallowed here so a test log shows only what the user asked for.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

from pytest_npu.errors import CompressionError

OPSET = 21
INPUT_NAME = "x"
OUTPUT_NAME = "y"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence stdout, Python warnings and WARNING-level logging (torch exporter, ORT quantiser)."""
    root = logging.getLogger()
    loggers = [root, logging.getLogger("torch"), logging.getLogger("torch.onnx"),
               logging.getLogger("torch.onnx._internal.exporter._registration")]
    levels = [lg.level for lg in loggers]
    disabled = logging.root.manager.disable
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        logging.disable(logging.WARNING)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def example_input(model: nn.Module, input_shape: Sequence[int] | None) -> torch.Tensor:
    """A batch-2 example (batch 1 can be specialised away by torch.export)."""
    shape = input_shape or getattr(model, "input_shape", None)
    if shape is None:
        raise CompressionError(
            f"cannot export {type(model).__name__} to ONNX: its input shape is unknown; pass "
            "input_shape=(C, H, W) (without the batch axis), set model.input_shape, or give "
            "compress.pipeline data to take it from (eval_data, or a step's calibration or training data)")
    return torch.randn(2, *tuple(shape), generator=torch.Generator().manual_seed(0))


@contextlib.contextmanager
def single_thread():
    """Train with one intra-op thread: on a small model two threads are barely faster when the
    machine is idle and many times slower when it is busy (spinning OpenMP workers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def strip_debug_info(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the exporter's per-node stack traces and doc strings (about 10 KiB on a small model).

    They are debugging aids, not part of the network; keeping them would make every size figure
    (and the int8 vs float size ratio) measure exporter chatter rather than weights.
    """
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    proto.doc_string = ""
    return proto


def to_onnx(model: nn.Module, input_shape: Sequence[int] | None = None,
            path: str | Path | None = None) -> onnx.ModelProto:
    """Export ``model`` (eval mode) to an ONNX ModelProto; also write it to ``path`` if given."""
    x = example_input(model, input_shape)
    was_training = model.training
    model.eval()
    try:
        with quiet(), torch.no_grad(), single_thread():
            program = torch.onnx.export(
                model, (x,), None, dynamo=True, external_data=False, verbose=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=OPSET)
    except CompressionError:
        raise
    except Exception as exc:  # the exporter raises many unrelated types; name the model and the cause
        raise CompressionError(
            f"torch.onnx.export failed for {type(model).__name__} with input shape {tuple(x.shape[1:])}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. Check that forward() "
            "takes one tensor and uses only ONNX-exportable operations") from exc
    finally:
        model.train(was_training)
    if program is None:  # only the legacy exporter returns None; dynamo=True always returns a program
        raise CompressionError(f"torch.onnx.export returned no program for {type(model).__name__}")
    proto = strip_debug_info(program.model_proto)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(proto, str(path))
    return proto
