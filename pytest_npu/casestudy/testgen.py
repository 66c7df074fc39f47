"""Write the pytest file a user would keep to hold the port to the figures the demo measured.

Budgets are the measured figures plus a stated margin (:data:`MARGINS`), rounded outward to three
significant digits so the file reads well and never becomes tighter than the margin promised. The
file uses the public API only: it quantises the shipped float model and the demo's pruned +
distilled student (a saved artifact, so its figures repeat exactly) with ``pytest_npu.compress``,
takes data from ``reference_models``, and checks each port with ``npu_target`` / ``npu_budget``
markers and the ``npu`` fixture.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .table import PortFigures


@dataclass(frozen=True)
class Margin:
    """How a budget is derived from a measurement: ``scale`` x measured + ``offset``."""

    scale: float = 1.0
    offset: float = 0.0
    floor: bool = False          # a lower limit (higher is better): round down, not up
    why: str = ""

    def apply(self, measured: float) -> float:
        return measured * self.scale + self.offset


# Cost figures are modelled and deterministic: 10 % headroom lets a compiler change that costs a
# little pass while a real regression (a layer spilling to DRAM, a lost core) fails.  Accuracy
# figures get room for a re-trained student (distillation is seeded, but float sums may reorder).
MARGINS: dict[str, Margin] = {
    "latency_ms": Margin(scale=1.10, why="measured + 10 %"),
    "energy_mj": Margin(scale=1.10, why="measured + 10 %"),
    "sram_kib": Margin(scale=1.10, why="measured + 10 %"),
    "dram_kib": Margin(scale=1.10, why="measured + 10 %"),
    "mse": Margin(scale=1.5, why="measured x 1.5"),
    "sqnr_db": Margin(offset=-1.0, floor=True, why="measured - 1 dB"),
    "top1_drop": Margin(offset=0.01, why="measured + 1 point"),
}


def measured(fig: PortFigures) -> dict[str, float]:
    """The figures that get budgets, under the metric names ``npu_budget`` takes."""
    return {"latency_ms": fig.latency_ms, "energy_mj": fig.energy_mj, "sram_kib": fig.sram_kib,
            "dram_kib": fig.dram_kib, "mse": fig.mse, "sqnr_db": fig.sqnr_db, "top1_drop": fig.top1_drop}


def _round_outward(value: float, floor: bool, digits: int = 3) -> float:
    """Round to ``digits`` significant digits away from the measurement (down for floors, up else)."""
    if value == 0 or not math.isfinite(value):
        return value
    exponent = math.floor(math.log10(abs(value))) - digits + 1
    step = 10.0 ** exponent
    rounded = (math.floor if floor else math.ceil)(value / step) * step
    return float(f"{rounded:.{digits}g}")


def budgets(fig: PortFigures) -> dict[str, float]:
    """``npu_budget`` keyword arguments for one port: measured figures with :data:`MARGINS`."""
    limits = {}
    for metric, value in measured(fig).items():
        if not math.isfinite(value):       # e.g. SQNR of a bit-exact port: nothing to hold
            continue
        margin = MARGINS[metric]
        limits[metric] = _round_outward(margin.apply(value), margin.floor)
    return limits


@dataclass(frozen=True)
class Recipe:
    """How the demo built its models; the generated file rebuilds them the same way."""

    samples: int | None          # held-out images emulated (None: all of them)
    prune_amount: float
    distill_epochs: int
    calibration_samples: int
    command: str                 # the demo command line, for the file's docstring
    student: str = "models/digits_pruned_kd_float.onnx"   # pruned + distilled float model, next to the file


def _identifier(text: str) -> str:
    name = re.sub(r"\W+", "_", Path(text).stem if text.endswith(".toml") else text).strip("_")
    return name if name and not name[0].isdigit() else f"t_{name}"


def _class_name(target: str) -> str:
    return "TestOn" + "".join(part[:1].upper() + part[1:] for part in _identifier(target).split("_"))


_HEADER = '''"""Hold the digits CNN port to the figures `pytest-npu demo` measured.

Written by `{command}`.
Each test compiles one model variant for one NPU target, emulates it over {samples_text}
and checks budgets that are the measured figures plus a margin:
{margins}
Run it with `python -m pytest {filename} -q`; tighten a budget when the port improves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_npu import compress
from reference_models import digits_cnn

SAMPLES = {samples}          # held-out images per run (None: all of them)
CALIBRATION_SAMPLES = {calibration}


@pytest.fixture(scope="session")
def held_out():
    """The held-out digits (never used for training or calibration) and their labels."""
    x, y = digits_cnn.test_data()
    return x[:SAMPLES], y[:SAMPLES]


@pytest.fixture(scope="session")
def float_onnx():
    """The shipped float model: the reference every port is compared with."""
    return digits_cnn.onnx_path()


def quantized(model, precision):
    return compress.quantize(model, precision, calibration=digits_cnn.calib_data(CALIBRATION_SAMPLES))
'''

_PRUNED_FIXTURE = '''

@pytest.fixture(scope="session")
def pruned_kd():
    """The float student the demo trained: a trained model is an artifact, so its figures are repeatable.

    It was made with
        teacher = digits_cnn.load()
        student = compress.distill(teacher=teacher, data=digits_cnn.train_data(), epochs={epochs})(
            compress.prune(teacher, {prune_amount}, structured=True))
        compress.to_onnx(student, path="{student}")
    """
    path = Path(__file__).parent / "{student}"
    if not path.is_file():
        pytest.fail(f"{{path}} is missing: run `pytest-npu demo` again, or rebuild it as this docstring shows")
    return path
'''

_VARIANT_FIXTURE = '''

@pytest.fixture(scope="session")
def {fixture}({source}):
    return quantized({source}, "{precision}")
'''


def variant_fixture(variant: str) -> str:
    """The fixture name for a model variant ("int8" -> "model_int8")."""
    return "model_" + _identifier(variant)


def _source_fixture(variant: str) -> str:
    return "pruned_kd" if variant.startswith("pruned") else "float_onnx"


def render(figures: list[PortFigures], recipe: Recipe, filename: str = "test_digits_port.py") -> str:
    """The whole test module as text."""
    margins = "\n".join(f"  {metric}: {margin.why}" for metric, margin in MARGINS.items())
    samples_text = (f"the first {recipe.samples} held-out digits" if recipe.samples
                    else "all held-out digits")
    parts = [_HEADER.format(command=recipe.command, samples_text=samples_text, margins=margins,
                            filename=filename, samples=recipe.samples, calibration=recipe.calibration_samples)]
    variants = list(dict.fromkeys(f.model.name for f in figures))
    if any(_source_fixture(v) == "pruned_kd" for v in variants):
        parts.append(_PRUNED_FIXTURE.format(epochs=recipe.distill_epochs, prune_amount=recipe.prune_amount,
                                            student=recipe.student))
    for variant in variants:
        precision = next(f.model.precision for f in figures if f.model.name == variant)
        parts.append(_VARIANT_FIXTURE.format(fixture=variant_fixture(variant), source=_source_fixture(variant),
                                             precision=precision))
    for target in dict.fromkeys(f.target for f in figures):
        parts.append(f'\n\n@pytest.mark.npu_target({json.dumps(target)})\nclass {_class_name(target)}:\n'
                     f'    """The port on {target}."""\n')
        for fig in (f for f in figures if f.target == target):
            parts.append(_test_method(fig))
    return "".join(parts)


def _test_method(fig: PortFigures) -> str:
    limits = budgets(fig)
    kwargs = [f"{k}={v!r}" for k, v in limits.items()]
    seen = [f"{k} {v:.4g}" for k, v in measured(fig).items()]
    fixture = variant_fixture(fig.model.name)
    half = (len(kwargs) + 1) // 2
    return (f"\n    # {fig.model.label}, measured on {fig.samples} images: {', '.join(seen[:4])},\n"
            f"    # {', '.join(seen[4:])}\n"
            f"    @pytest.mark.npu_budget(\n        {', '.join(kwargs[:half])},\n"
            f"        {', '.join(kwargs[half:])})\n"
            f"    def test_{_identifier(fig.model.name)}(self, npu, {fixture}, float_onnx, held_out):\n"
            f'        npu.run(({fixture}, float_onnx), held_out, reference="float")\n')


def write(path: str | Path, figures: list[PortFigures], recipe: Recipe) -> Path:
    """Write the test module (and a pytest.ini making its directory its own pytest root)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render(figures, recipe, path.name)
    compile(text, str(path), "exec")       # a generator bug must fail here, not in the user's run
    path.write_text(text)
    ini = path.parent / "pytest.ini"
    if not ini.exists():
        ini.write_text(
            "# Written by `pytest-npu demo`: this directory is its own pytest root, so a surrounding\n"
            "# project's settings do not apply. The budgets in the test file gate the port; to also gate\n"
            "# regressions against recorded figures, delete the npu_baseline line and run once with\n"
            "# --npu-update-baseline.\n"
            "[pytest]\nnpu_baseline = false\nnpu_history = off\n")
    return path
