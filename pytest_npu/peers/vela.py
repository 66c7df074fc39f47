"""Arm Vela as a peer estimator: its cycle and memory figures for a ``.tflite`` model on a target.

``estimate(model, target)`` runs the ``vela`` CLI of the installed ``ethos-u-vela`` (the
``[vela]`` extra; 5.2.0 is the version the cost model is calibrated against) on the model, for
the Vela accelerator the target file names (``vela_accelerator``), with a system configuration
made from the target's own figures: clock, SRAM and off-chip bandwidth (Vela's ``clock_scale``
times its AXI port width), latencies and burst lengths, SRAM size as the arena limit. When those
figures equal a system configuration of the ``vela.ini`` shipped with Vela, that one is used by
name, so Vela's report names it (u55-128/u55-256 follow ``Ethos_U55_High_End_Embedded``).

It parses what Vela wrote (``<model>_summary_<system>.csv`` and, from ``--verbose-performance``,
``<model>_per-layer.csv``; both of Vela's cores' column names) into a :class:`VelaEstimate`.
:func:`side_by_side` pairs Vela's layers with pytest-npu's by output tensor name: Vela names each
operation after the tensor it writes; the operations Vela adds when it decomposes a layer (a
softmax becomes ~30 element-wise steps named after internal tensors) come before the operation
that writes the layer's output and are counted with it. Every figure shown is one Vela printed.
"""

from __future__ import annotations

import configparser
import csv
import dataclasses
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PeerError
from ..targets.model import Target

EXTRA_HINT = "install the [vela] extra: pip install 'pytest-npu[vela]' (Arm's ethos-u-vela)"
AXI_PORT_BYTES = {"ethos-u55": 8, "ethos-u65": 16}     # Vela: AXI port width per accelerator family
OFF_CHIP = {"ethos-u55": "OffChipFlash", "ethos-u65": "Dram"}
SYSTEM_NAME = "pytest_npu"
MEMORY_MODE = "Shared_Sram"                             # arena and cache in SRAM, constants off chip
TIMEOUT_S = 600


@dataclass(frozen=True)
class VelaLayer:
    """One row of Vela's per-layer CSV (cycles in NPU clock cycles, bytes as Vela counts them)."""

    name: str              # the tensor the operation writes
    op: str                # Vela's operator (after its graph rewrites), e.g. "Conv2D", "Sub"
    original_op: str       # the TFLite operator it came from
    cycles: int            # "Op Cycles": the slowest of NPU and each memory's access cycles
    npu_cycles: int
    sram_access_cycles: int
    off_chip_access_cycles: int   # bytes moved over the off-chip port / its bytes per cycle
    macs: int
    staging_bytes: int     # SRAM in use while it runs ("Staging Usage" / "SRAM Usage")


@dataclass(frozen=True)
class VelaEstimate:
    """Vela's figures for one model on one accelerator and system configuration."""

    network: str
    accelerator: str
    system_config: str
    memory_mode: str
    clock_hz: float
    cycles: int
    macs: int
    sram_used_bytes: int           # "Total SRAM used": the arena's peak allocation
    off_chip_read_bytes: int       # per inference: feature maps, weights and scales, LUTs
    off_chip_write_bytes: int
    weight_read_bytes: int         # weights, scales and LUTs read from off-chip memory (all but feature maps)
    encoded_weight_bytes: int      # "total_npu_encoded_weights"
    layers: tuple[VelaLayer, ...] = ()
    summary: dict[str, str] = field(default_factory=dict, compare=False)   # the raw summary CSV row
    version: str = ""

    @property
    def latency_ms(self) -> float:
        return self.cycles / self.clock_hz * 1e3

    def metrics(self) -> dict[str, float]:
        """Vela's figures under the names budgets use (``npu_budget(vela_cycles=...)``)."""
        return {"vela_cycles": float(self.cycles), "vela_latency_ms": self.latency_ms,
                "vela_sram_kib": self.sram_used_bytes / 1024,
                "vela_dram_kib": (self.off_chip_read_bytes + self.off_chip_write_bytes) / 1024}


def require() -> str:
    """Vela's version; a PeerError naming the extra when it is not installed."""
    try:
        from ethosu.vela import _version
    except ImportError:
        raise PeerError(f"Vela is not installed; {EXTRA_HINT}") from None
    return str(getattr(_version, "__version__", "unknown"))


def accelerator(target: Target) -> str:
    """The Vela ``--accelerator-config`` the target follows, or a PeerError naming the key."""
    if not target.vela_accelerator:
        where = target.path or target.name
        raise PeerError(f"target {target.name} ({where}) names no Vela accelerator: add "
                        "vela_accelerator = \"ethos-u55-256\" (or the configuration it follows) at the top "
                        "of its file; the built-in u55-128 and u55-256 have one")
    return target.vela_accelerator


def _family(target: Target) -> str:
    return accelerator(target).rsplit("-", 1)[0]


def system_config(target: Target) -> dict[str, str]:
    """The Vela ``[System_Config]`` keys that describe ``target``'s memories."""
    family = _family(target)
    axi = AXI_PORT_BYTES[family]
    off_chip = OFF_CHIP[family]
    return {
        "core_clock": _number(target.clock_mhz * 1e6),
        "axi0_port": "Sram", "axi1_port": off_chip,
        "Sram_clock_scale": _number(target.sram_bytes_per_cycle / axi),
        "Sram_burst_length": str(target.sram_burst_bytes or axi),
        "Sram_read_latency": str(target.sram_latency_cycles),
        "Sram_write_latency": str(target.sram_latency_cycles),
        f"{off_chip}_clock_scale": _number(target.dram_bytes_per_cycle / axi),
        f"{off_chip}_burst_length": str(target.dram_burst_bytes),
        f"{off_chip}_read_latency": str(target.dram_latency_cycles),
    }


def _number(value: float) -> str:
    return repr(float(value)).rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def shipped_ini() -> Path | None:
    """The ``Arm/vela.ini`` that ships with Vela (None when Vela is absent)."""
    try:
        import ethosu
    except ImportError:
        return None
    path = Path(next(iter(ethosu.__path__))) / "config_files" / "Arm" / "vela.ini"
    return path if path.is_file() else None


def shipped_system(target: Target) -> str | None:
    """The name of a shipped system configuration with exactly ``target``'s figures, if any."""
    path = shipped_ini()
    if path is None:
        return None
    parser = configparser.ConfigParser()
    parser.read(path)
    mine = system_config(target)
    for section in parser.sections():
        if not section.startswith("System_Config."):
            continue
        theirs = parser[section]
        if all(key in theirs and _same(theirs[key], value) for key, value in mine.items()):
            return section.split(".", 1)[1]
    return None


def _same(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a.strip() == b.strip()


def config_arguments(target: Target, workdir: Path) -> list[str]:
    """``--config/--system-config/--memory-mode/--arena-cache-size`` for ``target``: the shipped
    configuration when it has the same figures, else a ``vela.ini`` written into ``workdir``."""
    shipped = shipped_system(target)
    if shipped is not None:
        ini, system = shipped_ini(), shipped
    else:
        ini, system = workdir / "vela.ini", SYSTEM_NAME
        lines = [f"[System_Config.{SYSTEM_NAME}]"]
        lines += [f"{k}={v}" for k, v in system_config(target).items()]
        lines += ["", f"[Memory_Mode.{MEMORY_MODE}]", "const_mem_area=Axi1", "arena_mem_area=Axi0",
                  "cache_mem_area=Axi0", ""]
        ini.write_text("\n".join(lines), encoding="utf-8")
    return ["--config", str(ini), "--system-config", system, "--memory-mode", MEMORY_MODE,
            "--arena-cache-size", str(target.sram_bytes)]


def estimate(model: str | Path, target: Target, workdir: str | Path | None = None,
             timeout_s: float = TIMEOUT_S) -> VelaEstimate:
    """Run Vela on a ``.tflite`` model for ``target`` and parse its figures."""
    version = require()
    path = Path(model)
    if path.suffix.lower() != ".tflite":
        raise PeerError(f"{path}: Vela reads TFLite flatbuffers; pass the .tflite file of the model "
                        "(an ONNX model has no Vela estimate)")
    if not path.is_file():
        raise PeerError(f"{path}: no such model file")
    acc = accelerator(target)
    with tempfile.TemporaryDirectory(prefix="pytest-npu-vela-") as scratch:
        out = Path(workdir) if workdir is not None else Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "ethosu.vela", str(path), "--accelerator-config", acc,
                   *config_arguments(target, out), "--output-dir", str(out), "--verbose-performance"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise PeerError(f"Vela did not finish on {path} within {timeout_s:.0f} s") from None
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
            raise PeerError(f"Vela {version} failed on {path} for {acc} (exit {done.returncode}):\n{tail}")
        result = parse(out, path.stem)
    return dataclasses.replace(result, version=version)


def parse(output_dir: str | Path, network: str) -> VelaEstimate:
    """Read ``<network>_summary_*.csv`` and ``<network>_per-layer.csv`` from Vela's output dir."""
    out = Path(output_dir)
    summaries = sorted(out.glob(f"{network}_summary_*.csv"))
    if not summaries:
        raise PeerError(f"{out}: Vela wrote no {network}_summary_*.csv (was it run with --output-dir {out}?)")
    summary = _rows(summaries[0])[0]
    layers_csv = out / f"{network}_per-layer.csv"
    layers = tuple(_layer(row) for row in _rows(layers_csv)) if layers_csv.is_file() else ()
    off_chip = ("dram", "on_chip_flash", "off_chip_flash")
    total = sum(_int(summary, f"{m}_total_bytes") for m in off_chip)
    write = sum(_int(summary, f"{m}_{k}_write_bytes") for m in off_chip for k in ("feature_map", "weight"))
    read = total - write                 # feature maps, weights and scales, LUTs
    return VelaEstimate(
        network=summary.get("network", network), accelerator=summary.get("accelerator_configuration", ""),
        system_config=summary.get("system_config", ""), memory_mode=summary.get("memory_mode", ""),
        clock_hz=float(summary.get("core_clock") or 0) or 1.0, cycles=_int(summary, "cycles_total"),
        macs=_int(summary, "nn_macs"), sram_used_bytes=round(float(summary.get("sram_memory_used") or 0) * 1024),
        off_chip_read_bytes=read, off_chip_write_bytes=write,
        # Vela's "weight" columns leave out the scale streams of weights it reads in place; the
        # total has them: everything off chip that is not a feature map
        weight_read_bytes=read - sum(_int(summary, f"{m}_feature_map_read_bytes") for m in off_chip),
        encoded_weight_bytes=_int(summary, "total_npu_encoded_weights"), layers=layers, summary=summary)


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise PeerError(f"{path}: cannot read Vela's output ({exc.strerror})") from None
    if not rows:
        raise PeerError(f"{path}: Vela's CSV has no rows")
    return rows


def _int(row: dict[str, str], key: str) -> int:
    value = row.get(key, "") or "0"
    try:
        return round(float(value))
    except ValueError:
        raise PeerError(f"Vela's CSV column {key!r} holds {value!r}, not a number") from None


def _pick(row: dict[str, str], *keys: str) -> str:
    """The first of ``keys`` present (Vela's C++ and Python cores name some columns differently)."""
    return next((row[k] for k in keys if k in row), "")


def _layer(row: dict[str, str]) -> VelaLayer:
    off_chip = sum(_int(row, k) for k in ("DRAM AC", "OnFlash AC", "OffFlash AC"))
    return VelaLayer(
        name=row.get("Name", ""), op=row.get("NNG Operator", ""),
        original_op=_pick(row, "Original Operator", "TFLite_operator"), cycles=_int(row, "Op Cycles"),
        npu_cycles=_int(row, "NPU"), sram_access_cycles=_int(row, "SRAM AC"), off_chip_access_cycles=off_chip,
        macs=_int(row, "MAC Count"),
        staging_bytes=round(float(_pick(row, "Staging Usage", "SRAM Usage") or 0)))


def side_by_side(rows: list[dict], estimate: VelaEstimate, target: Target) -> list[dict]:
    """pytest-npu's layer rows with Vela's figures for the same layer added.

    Each row Vela has gains ``vela_cycles``, ``vela_macs``, ``vela_sram_bytes`` (Vela's staging
    usage while it runs), ``vela_off_chip_bytes`` (its off-chip access cycles times the target's
    off-chip bytes per cycle, which is how Vela computed them), ``vela_ops`` (Vela's operations,
    in order) and ``cycles_ratio`` (pytest-npu / Vela). A Vela operation belongs to the layer whose
    output tensor it writes; the steps of a decomposition go with the next named one (Vela lists
    operations in execution order, the decomposed layer's own output last). Vela operations that
    match no layer at all come back as rows of their own (``where`` = "vela only")."""
    owner: dict[str, int] = {}
    for i, row in enumerate(rows):
        for name in row.get("outputs") or [row["layer"]]:
            owner.setdefault(name, i)
    groups: dict[int, list[VelaLayer]] = {}
    pending: list[VelaLayer] = []
    for layer in estimate.layers:
        pending.append(layer)
        if layer.name in owner:
            groups.setdefault(owner[layer.name], []).extend(pending)
            pending = []
    if pending and groups:
        groups[max(groups)].extend(pending)
        pending = []
    paired = []
    for i, row in enumerate(rows):
        row = dict(row)
        vela = groups.get(i)
        if vela:
            cycles = sum(v.cycles for v in vela)
            row.update(vela_cycles=cycles, vela_macs=sum(v.macs for v in vela),
                       vela_sram_bytes=max(v.staging_bytes for v in vela),
                       vela_off_chip_bytes=round(sum(v.off_chip_access_cycles for v in vela)
                                                 * target.dram_bytes_per_cycle),
                       vela_ops="+".join(dict.fromkeys(v.op for v in vela if v.cycles)) or vela[0].op,
                       cycles_ratio=(row["cycles"] / cycles) if cycles else None)
        paired.append(row)
    paired += [{"layer": v.name, "op": v.original_op, "where": "vela only", "macs": 0, "cycles": 0,
                "vela_cycles": v.cycles, "vela_macs": v.macs, "vela_sram_bytes": v.staging_bytes,
                "vela_off_chip_bytes": round(v.off_chip_access_cycles * target.dram_bytes_per_cycle),
                "vela_ops": v.op, "cycles_ratio": None} for v in pending]
    return paired
