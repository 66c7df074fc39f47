"""ResNet-8, the MLPerf Tiny image-classification network (CIFAR-10 shaped: 32x32x3, 10 classes).

No CIFAR-10 ships here (no downloads at run time), so ``load()`` gives seeded weights with
BatchNorm statistics measured on seeded inputs, and ``calib_data``/``test_data`` are seeded
standard-normal images: the model exercises the compiler and the cost model with the real layer
structure, not accuracy.  Structure (MLPerf Tiny reference): Conv3x3(16) -> three residual stacks
of 16, 32 (stride 2), 64 (stride 2) channels, each Conv3x3-BN-ReLU-Conv3x3-BN + shortcut (1x1
stride-2 conv when the shape changes) -> ReLU, then AvgPool(8) -> Linear(64, 10).
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import SeededReference

NAME = "resnet8"
input_shape = (3, 32, 32)
num_classes = 10
SEED = 8


class ResidualStack(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride) if (stride != 1 or cin != cout) else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet8(nn.Module):
    def __init__(self, num_classes: int = num_classes):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.stack1 = ResidualStack(16, 16, 1)
        self.stack2 = ResidualStack(16, 32, 2)
        self.stack3 = ResidualStack(32, 64, 2)
        self.pool = nn.AvgPool2d(8)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stack3(self.stack2(self.stack1(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))


_ref = SeededReference(NAME, ResNet8, input_shape, SEED)
build, load, export_onnx, calib_data, test_data = (_ref.build, _ref.load, _ref.export_onnx, _ref.calib_data,
                                                   _ref.test_data)
