"""``pytest-npu demo``: port the digits CNN to the built-in NPUs and show what every step bought.

The steps, each timed and each failing loudly (non-zero exit) rather than printing a partial story:

1. the float CNN trained on scikit-learn's bundled digits (shipped artifact, nothing downloaded);
2. compression through ``pytest_npu.compress``: int8 / int16 quantisation of the float model, and
   structured pruning + distillation followed by the same quantisations, with a per-step table;
3. compilation for each target (compiled once per model and target), with the host-fallback report;
4. emulation over the held-out images in batches;
5. the before/after table per target (accuracy against the float model, modelled latency and
   energy, memory, and the float model's host CPU time for the speedup column);
6. an HTML report, and the pytest file that holds these figures, which the demo then runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import tables
from ..errors import ModelError, NpuError, TargetError
from . import table, testgen

QUICK_TARGETS = ("u55-256", "edge-3core")
# variant name -> (label, start from the pruned+distilled student?, precision)
VARIANTS: dict[str, tuple[str, bool, str]] = {
    "int8": ("float -> int8", False, "int8"),
    "int16": ("float -> int16", False, "int16"),
    "pruned-kd-int8": ("pruned+KD -> int8", True, "int8"),
    "pruned-kd-int16": ("pruned+KD -> int16", True, "int16"),
}
QUICK_VARIANTS = ("int8", "pruned-kd-int8")
PRUNE_AMOUNT = 0.5
DISTILL_EPOCHS = 8
QUICK_DISTILL_EPOCHS = 2
QUICK_SAMPLES = 120
CALIBRATION_SAMPLES = 256
STUDENT_FILE = "digits_pruned_kd_float.onnx"     # the pruned + distilled float model, in <out>/models
EMULATION_BATCH = 128            # inferences emulated at once (each owns an emulated DRAM image)
HOST_MIN_RUNS, HOST_MIN_SECONDS = 30, 0.3
STEPS_NOTE = ("top-1 and MSE of each step are onnxruntime's on the host; for quantised models its default "
              "session fuses Q/DQ into\ninteger kernels that can drift from the QDQ semantics (onnxruntime "
              "issues #32132, #25259), which the NPU follows exactly:\nthe before/after tables below are "
              "the NPU's own figures.")


@dataclass(frozen=True)
class Settings:
    out: Path
    quick: bool
    targets: tuple[str, ...]
    variants: tuple[str, ...]
    html: bool
    samples: int | None          # held-out images to emulate (None: all)
    distill_epochs: int
    run_test: bool = True
    command: str = "pytest-npu demo"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="npu-demo", metavar="DIR",
                        help="where the report, the models and the generated test go (default ./npu-demo)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a sub-minute run: targets {', '.join(QUICK_TARGETS)}, variants "
                             f"{', '.join(QUICK_VARIANTS)}, {QUICK_SAMPLES} held-out images, "
                             f"{QUICK_DISTILL_EPOCHS} distillation epochs")
    parser.add_argument("--targets", metavar="A,B", default=None,
                        help="comma-separated built-in target names or .toml paths (default: all built-ins)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML report")
    parser.add_argument("--no-test", action="store_true",
                        help="write the generated pytest file but do not run it")


def settings_from(args: argparse.Namespace) -> Settings:
    from .. import targets as target_registry

    if args.targets:
        names = tuple(dict.fromkeys(name.strip() for name in args.targets.split(",") if name.strip()))
        if not names:
            raise TargetError(f"--targets {args.targets!r} names no target; pass e.g. --targets u55-256,edge-3core "
                           f"(built-ins: {', '.join(target_registry.available())})")
    else:
        names = QUICK_TARGETS if args.quick else tuple(target_registry.available())
    # .toml paths become absolute: the generated test runs from --out, not from here
    names = tuple(str(Path(name).resolve()) if name.endswith(".toml") else name for name in names)
    for name in names:
        target_registry.load(name)         # a typo fails now, naming the target, not after training
    if not args.no_html:
        from ..errors import ReportError
        from ..harness.html import require_plotly

        try:
            require_plotly()               # and a missing plotly too
        except ReportError as exc:
            raise ReportError(f"{exc} (or pass --no-html)") from None
    command = "pytest-npu demo " + " ".join(shlex.quote(a) for a in _given_options(args))
    return Settings(
        out=Path(args.out), quick=args.quick, targets=names,
        variants=QUICK_VARIANTS if args.quick else tuple(VARIANTS), html=not args.no_html,
        samples=QUICK_SAMPLES if args.quick else None,
        distill_epochs=QUICK_DISTILL_EPOCHS if args.quick else DISTILL_EPOCHS,
        run_test=not getattr(args, "no_test", False), command=command.strip())


def _given_options(args: argparse.Namespace) -> list[str]:
    given = ["--out", str(args.out)]
    if args.quick:
        given.append("--quick")
    if args.targets:
        given += ["--targets", args.targets]
    if args.no_html:
        given.append("--no-html")
    if getattr(args, "no_test", False):
        given.append("--no-test")
    return given


def run(args: argparse.Namespace) -> int:
    return Demo(settings_from(args)).main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-npu demo", description=__doc__.splitlines()[0])
    configure(parser)
    try:
        return run(parser.parse_args(argv))
    except NpuError as exc:
        print(f"pytest-npu demo: error: {exc}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    label: str
    precision: str
    model: Any                   # quantised ONNX ModelProto
    figures: table.ModelFigures


@dataclass
class Demo:
    settings: Settings
    timings: dict[str, float] = field(default_factory=dict)
    steps: list[table.StepFigures] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    ports: list[table.PortFigures] = field(default_factory=list)
    compiled: dict[tuple[str, str], Any] = field(default_factory=dict)
    executions: dict[tuple[str, str], tuple[np.ndarray, Any]] = field(default_factory=dict)
    test_passed: bool | None = None
    test_output: str = ""

    def main(self) -> int:
        self.models_dir = self.settings.out / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        plan = [("float model", self.step_float), ("compression", self.step_compress),
                ("compilation", self.step_compile), ("emulation", self.step_emulate),
                ("before/after", self.step_figures), ("generated test", self.step_test),
                ("report", self.step_report)]
        for number, (name, step) in enumerate(plan, 1):
            print(f"\n[{number}/{len(plan)}] {name}", flush=True)
            start = time.perf_counter()
            try:
                step()
            except NpuError as exc:
                print(f"pytest-npu demo: step {number} ({name}) failed: {exc}", file=sys.stderr)
                return 1
            except Exception:
                traceback.print_exc()
                print(f"pytest-npu demo: step {number} ({name}) failed with the error above (a bug in "
                      "pytest-npu: please report it with this output)", file=sys.stderr)
                return 1
            self.timings[name] = time.perf_counter() - start
        total = sum(self.timings.values())
        print(f"\ndone in {total:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()) + ")")
        if self.test_passed is False:
            print("pytest-npu demo: the generated test failed (output above)", file=sys.stderr)
            return 1
        return 0

    # ---- 1. the float model ---------------------------------------------------------------------
    def step_float(self) -> None:
        from reference_models import digits_cnn

        from .. import metrics

        self.float_torch = digits_cnn.load()
        self.float_onnx = digits_cnn.load_onnx()
        x, y = digits_cnn.test_data()
        n = self.settings.samples or len(x)
        self.x, self.y = x[:n], y[:n]
        self.train = digits_cnn.train_data()
        self.calibration = digits_cnn.calib_data(CALIBRATION_SAMPLES)
        session = _session(self.float_onnx.SerializeToString())
        self.float_logits = session.run(None, {session.get_inputs()[0].name: self.x})[0]
        self.float_top1 = metrics.top1(self.float_logits, self.y)
        self.host_ms = host_time_ms(session, self.x[:1])
        print(f"digits CNN (scikit-learn's bundled 8x8 digits): float top-1 {100 * self.float_top1:.1f} % on "
              f"{n} held-out images; {self.host_ms:.3f} ms per image on this CPU (onnxruntime, batch 1, "
              f"median of >= {HOST_MIN_RUNS} runs)")

    # ---- 2. compression --------------------------------------------------------------------------
    def step_compress(self) -> None:
        from .. import compress

        eval_data = (self.x, self.y)
        wanted = [(name, *VARIANTS[name]) for name in self.settings.variants]
        sources: dict[bool, Any] = {False: self.float_onnx}
        if any(pruned for _, _, pruned, _ in wanted):
            result = compress.pipeline(
                self.float_torch, compress.prune(PRUNE_AMOUNT, structured=True),
                compress.distill(teacher=self.float_torch, data=self.train, epochs=self.settings.distill_epochs),
                eval_data=eval_data, float_reference=self.float_onnx)
            self._add_steps("pruned+KD", result)
            sources[True] = result.model          # the student's float ONNX: exported once, quantised twice
            self.student_path = self.models_dir / STUDENT_FILE
            self.student_path.write_bytes(result.model.SerializeToString())
        for name, label, pruned, precision in wanted:
            result = compress.pipeline(sources[pruned], compress.quantize(precision, calibration=self.calibration),
                                       eval_data=eval_data, float_reference=self.float_onnx)
            last = self._add_steps(label, result)
            self.variants.append(Variant(name, label, precision, result.model, table.ModelFigures(
                name, label, precision, last.params, last.size_kib, last.macs, last.top1)))
            (self.models_dir / f"digits_{name}.onnx").write_bytes(result.model.SerializeToString())
        print(table.steps_table(self.steps))
        print(STEPS_NOTE)

    def _add_steps(self, variant: str, result: Any) -> table.StepFigures:
        """Add a pipeline's rows; its first row (the input model) only for the first pipeline."""
        rows = [step_figures(variant, step) for step in result.steps]
        if not self.steps:
            self.reference = table.ModelFigures("float", "float", "float32", rows[0].params, rows[0].size_kib,
                                                rows[0].macs, self.float_top1)
            self.steps.append(table.StepFigures("float", "shipped model", rows[0].params, rows[0].size_kib,
                                                rows[0].macs, rows[0].top1, rows[0].mse, None))
        self.steps.extend(rows[1:])
        return rows[-1]

    # ---- 3. compilation --------------------------------------------------------------------------
    def step_compile(self) -> None:
        from ..compiler import compile as compile_model

        for target in self.settings.targets:
            for variant in self.variants:
                start = time.perf_counter()
                cm = compile_model(variant.model, target)
                self.compiled[variant.name, target] = cm
                print(f"  {variant.label:<20} -> {target:<12} {len(cm.program.instructions):5d} instructions, "
                      f"{len(cm.unsupported())} op(s) on the host, {time.perf_counter() - start:.2f} s")

    # ---- 4. emulation ----------------------------------------------------------------------------
    def step_emulate(self) -> None:
        from ..compress.distill import ProgressBar

        chunks = range(0, len(self.x), EMULATION_BATCH)
        bar = ProgressBar(len(self.compiled) * len(chunks), "emulate")
        done = 0
        for (name, target), cm in self.compiled.items():
            outputs, first = [], None
            for start in chunks:
                ex = cm.run(self.x[start:start + EMULATION_BATCH])
                first = first or ex
                outputs.append(_single(ex.outputs, f"{name} on {target}"))
                done += 1
                bar.update(done, f"{name} @ {target}")
            self.executions[name, target] = (np.concatenate(outputs), first)

    # ---- 5. figures ------------------------------------------------------------------------------
    def step_figures(self) -> None:
        from .. import metrics

        for target in self.settings.targets:
            for variant in self.variants:
                logits, ex = self.executions[variant.name, target]
                cm = self.compiled[variant.name, target]
                accuracy = metrics.compare(self.float_logits, logits, self.y)
                s = ex.summary
                self.ports.append(table.PortFigures(
                    model=variant.figures, target=target, samples=len(self.x), top1=accuracy["top1"],
                    top1_drop=accuracy["top1_drop"], mse=accuracy["mse"], sqnr_db=accuracy["sqnr_db"],
                    cycles=s.cycles, latency_ms=s.latency_ms, energy_mj=s.energy_mj,
                    energy_breakdown_mj=dict(s.energy_breakdown_mj), sram_peak_bytes=s.sram_peak_bytes,
                    dram_bytes=s.dram_read_bytes + s.dram_write_bytes, roofline_cycles=s.roofline_cycles,
                    host_ms=self.host_ms, unsupported=tuple(tuple(u) for u in cm.unsupported()),
                    layers=_plain(ex.extra.get("layers") or cm.layers(ex))))
        self.port_table_text = table.port_tables(self.reference, self.ports, width=tables.terminal_width())
        for target, text in self.port_table_text.items():
            print(f"\n{target} ({len(self.x)} held-out images; energy and latency per inference)\n{text}")
        print("\nhost fallback:\n" + table.unsupported_table(self.ports))
        figures = [{**asdict(p), "speedup": p.speedup, "efficiency": p.efficiency} for p in self.ports]
        (self.settings.out / "figures.json").write_text(json.dumps(figures, indent=1, default=_jsonable) + "\n")

    # ---- 6. the generated test -------------------------------------------------------------------
    def step_test(self) -> None:
        recipe = testgen.Recipe(samples=self.settings.samples, prune_amount=PRUNE_AMOUNT,
                                distill_epochs=self.settings.distill_epochs,
                                calibration_samples=CALIBRATION_SAMPLES, command=self.settings.command,
                                student=f"models/{STUDENT_FILE}")
        self.test_file = testgen.write(self.settings.out / "test_digits_port.py", self.ports, recipe)
        print(f"wrote {self.test_file} (budgets = measured figures with margins: "
              + ", ".join(f"{k} {m.why}" for k, m in testgen.MARGINS.items()) + ")")
        if not self.settings.run_test:
            return
        command = [sys.executable, "-m", "pytest", self.test_file.name, "-q", "-p", "no:cacheprovider"]
        print("running: " + " ".join(shlex.quote(c) for c in command), flush=True)
        # the report shows this output: a wide terminal, so its summary table keeps every column
        done = subprocess.run(command, cwd=self.test_file.parent, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "COLUMNS": "200"})
        self.test_output = (done.stdout + done.stderr).strip()
        self.test_passed = done.returncode == 0
        lines = self.test_output.splitlines()
        print("\n".join(lines if not self.test_passed else lines[-1:]))
        print(f"generated test {'passed' if self.test_passed else 'FAILED'} (exit code {done.returncode}); "
              f"rerun it with: cd {shlex.quote(str(self.test_file.parent))} && python -m pytest "
              f"{self.test_file.name} -q")

    # ---- 7. report -------------------------------------------------------------------------------
    def step_report(self) -> None:
        if not self.settings.html:
            return
        from . import report_html

        rows = {target: [table.model_row(self.reference, self.host_ms),
                         *(table.port_row(p) for p in self.ports if p.target == target)]
                for target in self.settings.targets}
        timings = dict(self.timings)
        text = report_html.render(
            reference=self.reference, host_ms=self.host_ms, steps=self.steps, steps_note=STEPS_NOTE,
            figures=self.ports,
            port_headers=table.PORT_HEADERS, port_rows=rows, timings=timings, command=self.settings.command,
            test_file=str(self.test_file), test_outcome=self.test_output or "(not run: --no-test)",
            test_passed=self.test_passed)
        path = self.settings.out / "report.html"
        path.write_text(text)
        print(f"HTML report: {path.resolve()}")


# --------------------------------------------------------------------------------------------------


def step_figures(variant: str, step: Any) -> table.StepFigures:
    """A ``compress.pipeline`` StepReport as a table row."""
    return table.StepFigures(variant=variant, step=step.name, params=int(step.params),
                             size_kib=float(step.size_kib), macs=int(step.macs),
                             top1=None if step.top1 is None else float(step.top1),
                             mse=None if step.mse is None else float(step.mse), seconds=float(step.seconds))


def _session(model_bytes: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1     # one core, as a small embedded host CPU would give it
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def host_time_ms(session: Any, sample: np.ndarray) -> float:
    """Median wall time of one batch-1 inference (after a warm-up), over >= 30 runs and >= 0.3 s."""
    feed = {session.get_inputs()[0].name: sample}
    for _ in range(5):
        session.run(None, feed)
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < HOST_MIN_RUNS or time.perf_counter() - began < HOST_MIN_SECONDS:
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _single(outputs: dict, where: str) -> np.ndarray:
    if len(outputs) != 1:
        raise ModelError(f"{where}: expected one output (the logits), got {sorted(outputs)}")
    return next(iter(outputs.values()))


def _plain(rows: list[dict]) -> list[dict]:
    return json.loads(json.dumps(list(rows), default=_jsonable))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
