"""DS-CNN, the MLPerf Tiny keyword-spotting network (49x10 MFCC input, 12 classes).

No speech data ships here: seeded weights, BatchNorm statistics from seeded inputs, seeded inputs.
Structure (MLPerf Tiny reference, 64 channels): Conv(10x4, stride 2)-BN-ReLU, then four
depthwise-separable blocks (DW 3x3-BN-ReLU, PW 1x1-BN-ReLU), AvgPool(25x5) -> Linear(64, 12).
The reference pads "same" asymmetrically (4/5 rows, 1/1 columns); we pad (5, 1) symmetrically,
which gives the same 25x5 output grid with ordinary Conv padding.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ._common import SeededReference

NAME = "ds_cnn"
input_shape = (1, 49, 10)
num_classes = 12
channels = 64
SEED = 12


def _block(c: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("dw", nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False)), ("dw_bn", nn.BatchNorm2d(c)), ("dw_relu", nn.ReLU()),
        ("pw", nn.Conv2d(c, c, 1, bias=False)), ("pw_bn", nn.BatchNorm2d(c)), ("pw_relu", nn.ReLU()),
    ]))


def _build() -> nn.Module:
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(1, channels, (10, 4), stride=2, padding=(5, 1), bias=False)),
        ("bn", nn.BatchNorm2d(channels)), ("relu", nn.ReLU()),
        *((f"block{i}", _block(channels)) for i in range(1, 5)),
        ("pool", nn.AvgPool2d((25, 5))), ("flatten", nn.Flatten()), ("fc", nn.Linear(channels, num_classes)),
    ]))


_ref = SeededReference(NAME, _build, input_shape, SEED)
build, load, export_onnx, calib_data, test_data = (_ref.build, _ref.load, _ref.export_onnx, _ref.calib_data,
                                                   _ref.test_data)
