"""The MLPerf Tiny anomaly-detection autoencoder (640 log-mel features in, 640 out).

No machine-sound data ships here: seeded weights, BatchNorm statistics from seeded inputs, seeded
inputs.  Structure: 4 x [Linear(128)-BN-ReLU] -> Linear(8)-BN-ReLU -> 4 x [Linear(128)-BN-ReLU] ->
Linear(640).  The anomaly score is the reconstruction MSE, so the output is the 640-vector.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ._common import SeededReference

NAME = "autoencoder"
input_shape = (640,)
WIDTHS = (128, 128, 128, 128, 8, 128, 128, 128, 128)
SEED = 640


def _build() -> nn.Module:
    layers: list[tuple[str, nn.Module]] = []
    width = input_shape[0]
    for i, out in enumerate(WIDTHS, 1):
        layers += [(f"fc{i}", nn.Linear(width, out)), (f"bn{i}", nn.BatchNorm1d(out)), (f"relu{i}", nn.ReLU())]
        width = out
    layers.append(("out", nn.Linear(width, input_shape[0])))
    return nn.Sequential(OrderedDict(layers))


_ref = SeededReference(NAME, _build, input_shape, SEED)
build, load, export_onnx, calib_data, test_data = (_ref.build, _ref.load, _ref.export_onnx, _ref.calib_data,
                                                   _ref.test_data)
