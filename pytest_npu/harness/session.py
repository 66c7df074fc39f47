"""The ``npu`` runner (compile cache, runs, metrics) and the per-test record it produces.

Heavy modules (numpy, onnx, onnxruntime, the compiler) are imported inside methods only: loading the
plugin must not slow down a pytest run that never touches an NPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .verdict import Breach


@dataclass
class NpuRecord:
    """What one test measured on one target: the unit of budgets, baselines, history and reports.

    ``metrics`` hold the worst value over every ``npu.run`` of the test (max for costs and errors,
    min for sqnr_db / cosine / top1). ``provenance`` holds what determines the numbers (model sha256,
    target content hash, compile options, compiler version); ``layers`` the per-layer rows of the
    worst run; ``budgets`` the parsed npu_budget limits that applied.
    """

    nodeid: str
    name: str                       # test name with parameter ids, e.g. "test_port[u55-256]"
    module: str                     # test module path relative to rootdir
    target: str
    metrics: dict[str, float] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    layers: list[dict] = field(default_factory=list)
    budgets: dict[str, float] = field(default_factory=dict)
    runs: int = 0                   # how many npu.run calls (hypothesis examples included) aggregated
    host: dict = field(default_factory=dict)       # host CPU wall time and speedup: reported, never gated
    outcome: str = ""               # pytest outcome of the call phase, filled on the controller
    breaches: list[Breach] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["breaches"] = [breach.as_dict() for breach in self.breaches]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> NpuRecord:
        data = dict(data)
        data["breaches"] = [Breach.from_dict(row) for row in data.get("breaches", [])]
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, default=_builtin)

    @classmethod
    def from_json(cls, text: str) -> NpuRecord:
        return cls.from_dict(json.loads(text))


def _builtin(value):
    """numpy scalars and paths -> builtins, so records survive JSON and xdist's execnet."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
