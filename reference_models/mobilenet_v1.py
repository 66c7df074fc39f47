"""MobileNetV1 0.25, the MLPerf Tiny visual-wake-words network (96x96x3 input, 2 classes).

No VWW images ship here: seeded weights, BatchNorm statistics from seeded inputs, seeded inputs.
Structure (width multiplier 0.25): Conv3x3(8, stride 2)-BN-ReLU, 13 depthwise-separable blocks
(DW 3x3-BN-ReLU, PW 1x1-BN-ReLU) with the channel/stride plan below, AvgPool(3) -> Linear(256, 2).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ._common import SeededReference

NAME = "mobilenet_v1"
input_shape = (3, 96, 96)
num_classes = 2
# (stride of the depthwise conv, output channels of the pointwise conv) per block, alpha = 0.25
BLOCKS = ((1, 16), (2, 32), (1, 32), (2, 64), (1, 64), (2, 128),
          (1, 128), (1, 128), (1, 128), (1, 128), (1, 128), (2, 256), (1, 256))
SEED = 25


def _separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("dw", nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)), ("dw_bn", nn.BatchNorm2d(cin)),
        ("dw_relu", nn.ReLU()),
        ("pw", nn.Conv2d(cin, cout, 1, bias=False)), ("pw_bn", nn.BatchNorm2d(cout)), ("pw_relu", nn.ReLU()),
    ]))


def _build() -> nn.Module:
    layers: list[tuple[str, nn.Module]] = [
        ("conv", nn.Conv2d(3, 8, 3, 2, 1, bias=False)), ("bn", nn.BatchNorm2d(8)), ("relu", nn.ReLU())]
    cin = 8
    for i, (stride, cout) in enumerate(BLOCKS, 1):
        layers.append((f"block{i}", _separable(cin, cout, stride)))
        cin = cout
    layers += [("pool", nn.AvgPool2d(3)), ("flatten", nn.Flatten()), ("fc", nn.Linear(cin, num_classes))]
    return nn.Sequential(OrderedDict(layers))


_ref = SeededReference(NAME, _build, input_shape, SEED)
build, load, export_onnx, calib_data, test_data = (_ref.build, _ref.load, _ref.export_onnx, _ref.calib_data,
                                                   _ref.test_data)
