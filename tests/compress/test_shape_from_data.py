"""A torch model without ``input_shape`` takes its export shape from the data it is given."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pytest_npu import compress
from pytest_npu.errors import CompressionError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


def _data(shape=(1, 6, 6), n=24):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (n, *shape)).astype(np.float32), rng.integers(0, 3, n)


def test_eval_data_gives_the_shape():
    net = _net()
    assert not hasattr(net, "input_shape")
    result = compress.pipeline(net, compress.quantize("int8", calibration=_data()[0]), eval_data=_data())
    (graph_input,) = result.float_model.graph.input
    assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim][1:] == [1, 6, 6]
    assert result.steps[-1].top1 is not None and not hasattr(net, "input_shape")   # the user's model untouched


def test_calibration_alone_gives_the_shape():
    result = compress.pipeline(_net(), compress.quantize("int8", calibration=_data()[0]))
    assert any(n.op_type == "QuantizeLinear" for n in result.model.graph.node)


def test_data_that_disagree_are_refused_naming_each_source():
    with pytest.raises(CompressionError, match=r"disagree.*eval_data \(1, 6, 6\).*step 1 \(quantize int8 minmax\) "
                                               r"\(1, 8, 8\)"):
        compress.pipeline(_net(), compress.quantize("int8", calibration=_data((1, 8, 8))[0]), eval_data=_data())


def test_without_data_or_shape_the_error_says_what_to_pass():
    with pytest.raises(CompressionError, match="input_shape=.*eval_data"):
        compress.pipeline(_net(), compress.prune(0.5))
