"""An NPU Program: instructions, memory map and constants image, with a versioned file format.

The ``.npuprog`` file format (version 2)
----------------------------------------
A zip archive (stored, not pickled, so a file from an untrusted source is only data) holding:

``program.json``
    ``{"format": "pytest-npu-program", "version": 2, "target": NAME, "target_hash": HASH,
    "inputs": [...], "outputs": [...], "constants_offset": INT, "constants_bytes": INT,
    "constants_sha256": HEX, "tensors": [TENSOR...], "instructions": [INSTR...], "metadata": {...}}``

    * ``TENSOR`` = ``{"name", "mem", "offset", "shape", "dtype", "kind"}`` with ``kind`` one of
      ``input | output | constant | intermediate``.
    * ``INSTR`` = ``{"opcode": "CONV2D", <every dataclass field of the instruction>}``; an operand
      is ``{"mem", "offset", "shape", "dtype", "strides", "name"}``, a requant is
      ``{"multiplier", "shift", "ofm_zp", "lo", "hi", "rule"}``; tuples are JSON lists.
    * Free-form values (``HostOp.attrs``, ``metadata``) keep their Python types exactly: a tuple
      is ``{"__tuple__": [...]}``, a numpy array ``{"__ndarray__": [...], "dtype", "shape"}``.

``constants.bin``
    The raw constants image, copied into DRAM at ``constants_offset`` before a run.

A reader refuses (``ProgramError`` naming the file) an unknown format name or version, a corrupt
zip, a missing member, a constants image whose size or sha256 differs from the header, and an
unknown opcode or field. Version 2 (a requant's rounding ``rule``, POOL ``divide``, RESIZE
geometry, SOFTMAX) is the only version read; a change to the layout bumps it.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmulatorFault, ProgramError
from .isa import DTYPES, INSTRUCTIONS, MEMORIES, REQUANT_RULES, HostOp, Instruction, Operand, Requant

FORMAT_NAME = "pytest-npu-program"
FORMAT_VERSION = 2
TENSOR_KINDS = ("input", "output", "constant", "intermediate")
ALIGNMENT = 16  # bytes; every tensor the builder places starts on this boundary


@dataclass(frozen=True)
class TensorInfo:
    """A named tensor of the memory map (DRAM inputs/outputs/constants, SRAM intermediates)."""

    name: str
    mem: str
    offset: int
    shape: tuple[int, ...]
    dtype: str
    kind: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(DTYPES[self.dtype]).itemsize

    def operand(self) -> Operand:
        """The whole tensor as a contiguous operand."""
        return Operand(self.mem, self.offset, tuple(self.shape), self.dtype, name=self.name)


@dataclass
class Program:
    """What the compiler emits and the emulator runs (see the module docstring for the file format)."""

    instructions: list[Instruction]
    tensors: dict[str, TensorInfo]
    constants: bytes
    constants_offset: int
    inputs: list[str]
    outputs: list[str]
    target: str
    target_hash: str
    metadata: dict = field(default_factory=dict)

    # -- file format -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "target": self.target,
            "target_hash": self.target_hash,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "constants_offset": int(self.constants_offset),
            "constants_bytes": len(self.constants),
            "constants_sha256": hashlib.sha256(self.constants).hexdigest(),
            "tensors": [_tensor_to_dict(t) for t in self.tensors.values()],
            "instructions": [_instruction_to_dict(ins, i, path) for i, ins in enumerate(self.instructions)],
            "metadata": _encode_free(self.metadata, f"{path}: metadata"),
        }
        text = json.dumps(header, indent=1, sort_keys=False)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("program.json", text)
            archive.writestr("constants.bin", bytes(self.constants))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Program:
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                for member in ("program.json", "constants.bin"):
                    if member not in names:
                        raise ProgramError(f"{path}: not a pytest-npu program: the archive has no "
                                           f"{member} (members: {sorted(names)})")
                text = archive.read("program.json")
                constants = archive.read("constants.bin")
        except FileNotFoundError as exc:
            raise ProgramError(f"{path}: no such program file") from exc
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            raise ProgramError(f"{path}: corrupt program file (not a readable zip: {exc}); "
                               "re-create it with Program.save or `pytest-npu asm -o`") from exc
        try:
            header = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProgramError(f"{path}: program.json is not valid JSON ({exc})") from exc
        return _program_from_header(header, constants, path)

    # -- readable form -------------------------------------------------------------------------
    def to_asm(self) -> str:
        """Readable assembly: a memory-map header, then one instruction per line."""
        lines = [f"; pytest-npu program for target {self.target} (hash {self.target_hash})",
                 f"; {len(self.instructions)} instructions, constants {len(self.constants)} bytes "
                 f"at dram[0x{self.constants_offset:x}]",
                 "; memory map:"]
        for t in sorted(self.tensors.values(), key=lambda t: (t.mem, t.offset, t.name)):
            lines.append(f";   {t.kind:<12} {t.name:<24} {t.mem}[0x{t.offset:x}:+{t.nbytes}] "
                         f"{t.dtype}{_dims(t.shape)}")
        lines.append(f"; inputs: {', '.join(self.inputs)}   outputs: {', '.join(self.outputs)}")
        for index, ins in enumerate(self.instructions):
            lines.append(format_instruction(index, ins))
        return "\n".join(lines) + "\n"

    # -- helpers -------------------------------------------------------------------------------
    def tensor(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise ProgramError(f"program has no tensor {name!r}; tensors: {sorted(self.tensors)}") from None

    def memory_needed(self, mem: str) -> int:
        """One past the highest byte of ``mem`` any tensor, operand or the constants image uses."""
        hi = 0
        for t in self.tensors.values():
            if t.mem == mem:
                hi = max(hi, t.offset + t.nbytes)
        for ins in self.instructions:
            for op in ins.operands().values():
                if op.mem == mem:
                    hi = max(hi, operand_span(op)[1])
        if mem == "dram":
            hi = max(hi, self.constants_offset + len(self.constants))
        return hi


def deps_of(ins: Instruction) -> tuple[int, ...]:
    """Every instruction class declares ``deps``; the base class cannot (dataclass field order)."""
    return getattr(ins, "deps", ())


def layer_of(ins: Instruction) -> str:
    return getattr(ins, "layer", "")


# ---------------------------------------------------------------------------------------------
# assembly
_SKIP_ATTRS = {"deps", "layer", "core", "channel", "table", "exp_table", "attrs", "reason", "inputs", "outputs", "op"}


def _dims(values) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def format_operand(op: Operand) -> str:
    strides = "" if op.strides is None else f" strides={_dims(op.strides)}"
    label = f"{op.name}=" if op.name else ""
    return f"{label}{op.mem}[0x{op.offset:x}:+{op.nbytes}] {op.dtype}{_dims(op.shape)}{strides}"


def format_instruction(index: int, ins: Instruction) -> str:
    operands = ", ".join(f"{k}:{format_operand(v)}" for k, v in ins.operands().items())
    attrs = []
    if isinstance(ins, HostOp):
        attrs.append(f"op={ins.op}")
        if ins.reason:
            attrs.append(f"reason={ins.reason!r}")
    for f in fields(ins):
        value = getattr(ins, f.name)
        if f.name in _SKIP_ATTRS or isinstance(value, Operand):
            continue
        if f.name == "requant" and isinstance(value, Requant):
            m = value.multiplier
            shown = f"{m[0]}" if len(m) == 1 else f"{m[0]}..x{len(m)}"
            rule = f",rule={value.rule}" if value.rule else ""
            attrs.append(f"requant(m={shown},s={value.shift[0]}{'' if len(m) == 1 else '..'},"
                         f"zp={value.ofm_zp},clamp=[{value.lo},{value.hi}]{rule})")
        elif value is not None and value != f.default:
            attrs.append(f"{f.name}={value}")
        elif f.name in ("kind", "op") and isinstance(value, str):
            attrs.append(f"{f.name}={value}")
    table = getattr(ins, "table", None) or getattr(ins, "exp_table", None)
    if table:
        attrs.append(f"table[{len(table)}]")
    deps = f" deps={list(deps_of(ins))}" if deps_of(ins) else ""
    layer = f" ; {layer_of(ins)}" if layer_of(ins) else ""
    return f"{index:5d} {ins.engine():<16} {ins.opcode:<17} {operands}  {' '.join(attrs)}{deps}{layer}"


# ---------------------------------------------------------------------------------------------
# validation (static: before any instruction runs)
def operand_span(op: Operand) -> tuple[int, int]:
    """Half-open byte range ``[lo, hi)`` the view touches, correct for negative strides too."""
    if op.size == 0:
        return op.offset, op.offset
    strides = op.byte_strides()
    lo = op.offset + sum((d - 1) * s for d, s in zip(op.shape, strides) if s < 0)
    hi = op.offset + sum((d - 1) * s for d, s in zip(op.shape, strides) if s > 0) + op.itemsize
    return lo, hi


def where(index: int, ins: Instruction, operand: str | None = None) -> str:
    """How every fault message names its place: ``instruction 7 CONV2D (layer conv1), operand 'ofm'``."""
    layer = f" (layer {layer_of(ins)})" if layer_of(ins) else ""
    tail = f", operand {operand!r}" if operand else ""
    return f"instruction {index} {ins.opcode}{layer}{tail}"


def check_program(program: Program, *, memory_sizes: dict[str, int]) -> None:
    """Structural checks every program must pass before running: known memories and dtypes,
    dependencies that point backwards, operands inside ``memory_sizes`` (bytes per memory).

    Raises EmulatorFault with ``kind`` "dependency" or "bounds" naming the instruction and operand.
    SRAM capacity (``sram_overflow``) and target support are checked by the emulator, which knows
    the target.
    """
    for index, ins in enumerate(program.instructions):
        for dep in deps_of(ins):
            if not isinstance(dep, (int, np.integer)) or not 0 <= dep < index:
                raise EmulatorFault(
                    f"{where(index, ins, 'deps')}: dependency {dep!r} does not point to an earlier "
                    f"instruction (valid: 0..{index - 1}); deps must list indices of instructions "
                    "that come before this one", index=index, operand="deps", kind="dependency")
        for name, op in ins.operands().items():
            check_operand(index, ins, name, op, memory_sizes)


def check_operand(index: int, ins: Instruction, name: str, op: Operand, memory_sizes: dict[str, int]) -> None:
    if op.mem not in MEMORIES:
        raise EmulatorFault(f"{where(index, ins, name)}: unknown memory {op.mem!r} (use one of "
                            f"{', '.join(MEMORIES)})", index=index, operand=name, kind="bounds")
    if op.dtype not in DTYPES:
        raise EmulatorFault(f"{where(index, ins, name)}: unknown dtype {op.dtype!r} (use one of "
                            f"{', '.join(DTYPES)})", index=index, operand=name, kind="unsupported")
    if any(int(d) < 0 for d in op.shape) or (op.strides is not None and len(op.strides) != len(op.shape)):
        raise EmulatorFault(f"{where(index, ins, name)}: malformed view {op.describe()} strides="
                            f"{op.strides}: shape entries must be >= 0 and strides one per dimension",
                            index=index, operand=name, kind="shape")
    lo, hi = operand_span(op)
    size = memory_sizes[op.mem]
    if lo < 0 or hi > size:
        raise EmulatorFault(
            f"{where(index, ins, name)}: {format_operand(op)} touches bytes [{lo}, {hi}) outside "
            f"{op.mem.upper()} [0, {size}); fix the operand's offset/shape/strides or the memory plan",
            index=index, operand=name, kind="bounds")


# ---------------------------------------------------------------------------------------------
# building programs by hand (tests, micro-benchmarks)
class ProgramBuilder:
    """Places tensors (16-byte aligned bump allocation) and collects instructions.

    DRAM is one bump allocator from 0: a constant's bytes go into the constants image at its
    offset, so the image (copied to DRAM at offset 0) spans every constant, with zeros where
    inputs or intermediates were placed in between. ``emit()`` returns the instruction's index
    for later ``deps``.
    """

    def __init__(self, target_name: str = "", target_hash: str = ""):
        self.target_name = target_name
        self.target_hash = target_hash
        self._constants = bytearray()
        self._next = {"dram": 0, "sram": 0}
        self.tensors: dict[str, TensorInfo] = {}
        self.instructions: list[Instruction] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    def _place(self, name: str, mem: str, shape, dtype: str, kind: str) -> Operand:
        if name in self.tensors:
            raise ProgramError(f"tensor {name!r} placed twice")
        shape = tuple(int(d) for d in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(DTYPES[dtype]).itemsize
        offset = self._next[mem]
        self._next[mem] = -(-(offset + nbytes) // ALIGNMENT) * ALIGNMENT
        info = TensorInfo(name, mem, offset, shape, dtype, kind)
        self.tensors[name] = info
        return info.operand()

    def constant(self, name: str, data: np.ndarray) -> Operand:
        data = np.ascontiguousarray(data)
        dtype = next((k for k, v in DTYPES.items() if np.dtype(v) == data.dtype), None)
        if dtype is None:
            raise ProgramError(f"constant {name!r}: dtype {data.dtype} is not one of {list(DTYPES)}")
        operand = self._place(name, "dram", data.shape, dtype, "constant")
        self._constants.extend(b"\0" * (operand.offset - len(self._constants)))
        self._constants.extend(data.tobytes())
        return operand

    def input(self, name: str, shape, dtype: str = "int8") -> Operand:
        self.inputs.append(name)
        return self._place(name, "dram", shape, dtype, "input")

    def output(self, name: str, shape, dtype: str = "int8") -> Operand:
        self.outputs.append(name)
        return self._place(name, "dram", shape, dtype, "output")

    def dram(self, name: str, shape, dtype: str = "int8") -> Operand:
        return self._place(name, "dram", shape, dtype, "intermediate")

    def sram(self, name: str, shape, dtype: str = "int8") -> Operand:
        return self._place(name, "sram", shape, dtype, "intermediate")

    def emit(self, instruction: Instruction) -> int:
        self.instructions.append(instruction)
        return len(self.instructions) - 1

    def build(self, **metadata: Any) -> Program:
        metadata.setdefault("sram_bytes", self._next["sram"])
        return Program(list(self.instructions), dict(self.tensors), bytes(self._constants), 0,
                       list(self.inputs), list(self.outputs), self.target_name, self.target_hash,
                       dict(metadata))


# ---------------------------------------------------------------------------------------------
# JSON encoding
def _operand_to_dict(op: Operand) -> dict:
    return {"mem": op.mem, "offset": int(op.offset), "shape": [int(d) for d in op.shape],
            "dtype": op.dtype, "strides": None if op.strides is None else [int(s) for s in op.strides],
            "name": op.name}


def _tensor_to_dict(t: TensorInfo) -> dict:
    return {"name": t.name, "mem": t.mem, "offset": int(t.offset), "shape": [int(d) for d in t.shape],
            "dtype": t.dtype, "kind": t.kind}


def _instruction_to_dict(ins: Instruction, index: int, path: Path) -> dict:
    out: dict[str, Any] = {"opcode": ins.opcode}
    for f in fields(ins):
        value = getattr(ins, f.name)
        if isinstance(value, Operand):
            out[f.name] = _operand_to_dict(value)
        elif isinstance(value, Requant):
            out[f.name] = {"multiplier": [int(m) for m in value.multiplier],
                           "shift": [int(s) for s in value.shift], "ofm_zp": int(value.ofm_zp),
                           "lo": int(value.lo), "hi": int(value.hi), "rule": value.rule}
        elif isinstance(value, tuple) and value and isinstance(value[0], Operand):
            out[f.name] = [_operand_to_dict(v) for v in value]
        elif f.name == "attrs":
            out[f.name] = _encode_free(value, f"{path}: instruction {index} {ins.opcode} attrs")
        elif isinstance(value, tuple):
            out[f.name] = [int(v) for v in value]
        elif isinstance(value, (bool, np.bool_)):
            out[f.name] = bool(value)
        elif isinstance(value, (int, np.integer)):
            out[f.name] = int(value)
        else:
            out[f.name] = value
    return out


def _encode_free(value: Any, where: str) -> Any:
    """Encode metadata/attrs so that decoding gives back equal values of the same types."""
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ProgramError(f"{where}: keys must be strings, got {bad!r}")
        return {k: _encode_free(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode_free(v, where) for v in value]
    if isinstance(value, tuple):
        return {"__tuple__": [_encode_free(v, where) for v in value]}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ProgramError(f"{where}: a value of type {type(value).__name__} cannot be saved; use "
                       "numbers, strings, lists, tuples, dicts or numpy arrays")


def _decode_free(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_decode_free(v) for v in value["__tuple__"])
        if "__ndarray__" in value and set(value) <= {"__ndarray__", "dtype", "shape"}:
            return np.array(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
        return {k: _decode_free(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_free(v) for v in value]
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProgramError(f"{where}: expected an integer, got {value!r}")
    return value


def _int_tuple(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ProgramError(f"{where}: expected a list of integers, got {value!r}")
    return tuple(_int(v, where) for v in value)


def _operand_from_dict(d: Any, where: str) -> Operand:
    keys = {"mem", "offset", "shape", "dtype", "strides", "name"}
    if not isinstance(d, dict) or not {"mem", "offset", "shape", "dtype"} <= set(d) or set(d) - keys:
        raise ProgramError(f"{where}: an operand needs exactly the keys {sorted(keys)}, got {d!r}")
    if d["mem"] not in MEMORIES or d["dtype"] not in DTYPES:
        raise ProgramError(f"{where}: unknown memory {d['mem']!r} or dtype {d['dtype']!r}")
    strides = None if d.get("strides") is None else _int_tuple(d["strides"], where)
    return Operand(d["mem"], _int(d["offset"], where), _int_tuple(d["shape"], where), d["dtype"],
                   strides, str(d.get("name", "")))


def _requant_from_dict(d: Any, where: str) -> Requant | None:
    if d is None:
        return None
    if not isinstance(d, dict) or set(d) != {"multiplier", "shift", "ofm_zp", "lo", "hi", "rule"}:
        raise ProgramError(f"{where}: a requant needs the keys multiplier, shift, ofm_zp, lo, hi, rule; got {d!r}")
    if d["rule"] not in ("", *REQUANT_RULES):
        raise ProgramError(f"{where}: requant rule {d['rule']!r} is not one of {list(REQUANT_RULES)} (or \"\")")
    return Requant(_int_tuple(d["multiplier"], where), _int_tuple(d["shift"], where),
                   _int(d["ofm_zp"], where), _int(d["lo"], where), _int(d["hi"], where), d["rule"])


def _instruction_from_dict(d: Any, index: int, path: Path) -> Instruction:
    if not isinstance(d, dict) or "opcode" not in d:
        raise ProgramError(f"{path}: instruction {index} has no opcode")
    opcode = d["opcode"]
    cls = INSTRUCTIONS.get(opcode)
    if cls is None:
        raise ProgramError(f"{path}: instruction {index} has unknown opcode {opcode!r}; this build "
                           f"knows {', '.join(sorted(INSTRUCTIONS))} (is the file from a newer pytest-npu?)")
    known = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(known) - {"opcode"}
    if unknown:
        raise ProgramError(f"{path}: instruction {index} {opcode} has unknown fields {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, value in d.items():
        if name == "opcode":
            continue
        where = f"{path}: instruction {index} {opcode} field {name!r}"
        kind = str(known[name].type)
        if kind == "Operand":
            values[name] = _operand_from_dict(value, where)
        elif kind.startswith("tuple[Operand"):
            if not isinstance(value, list):
                raise ProgramError(f"{where}: expected a list of operands")
            values[name] = tuple(_operand_from_dict(v, where) for v in value)
        elif kind.startswith("Requant"):
            values[name] = _requant_from_dict(value, where)
        elif kind.startswith("tuple"):
            values[name] = _int_tuple(value, where)
        elif kind.startswith("dict"):
            if not isinstance(value, dict):
                raise ProgramError(f"{where}: expected an object")
            values[name] = _decode_free(value)
        elif kind == "int":
            values[name] = _int(value, where)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise ProgramError(f"{where}: expected true or false, got {value!r}")
            values[name] = value
        elif kind == "str":
            if not isinstance(value, str):
                raise ProgramError(f"{where}: expected a string, got {value!r}")
            values[name] = value
        else:
            values[name] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise ProgramError(f"{path}: instruction {index} {opcode} is incomplete: {exc}") from exc


def _program_from_header(header: Any, constants: bytes, path: Path) -> Program:
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ProgramError(f"{path}: program.json is not a {FORMAT_NAME} header "
                           f"(format={header.get('format') if isinstance(header, dict) else None!r})")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise ProgramError(f"{path}: program format version {version!r} is not supported (this "
                           f"pytest-npu reads version {FORMAT_VERSION}); recompile the model with this version")
    required = ("target", "target_hash", "inputs", "outputs", "constants_offset", "constants_bytes",
                "constants_sha256", "tensors", "instructions", "metadata")
    missing = [k for k in required if k not in header]
    if missing:
        raise ProgramError(f"{path}: program.json lacks {missing}")
    if len(constants) != header["constants_bytes"] or \
            hashlib.sha256(constants).hexdigest() != header["constants_sha256"]:
        raise ProgramError(f"{path}: constants.bin is corrupt ({len(constants)} bytes, header says "
                           f"{header['constants_bytes']}, or its sha256 differs)")
    tensors: dict[str, TensorInfo] = {}
    for t in header["tensors"]:
        where = f"{path}: tensor {t.get('name') if isinstance(t, dict) else t!r}"
        if not isinstance(t, dict) or set(t) != {"name", "mem", "offset", "shape", "dtype", "kind"}:
            raise ProgramError(f"{where}: needs exactly name, mem, offset, shape, dtype, kind")
        if t["kind"] not in TENSOR_KINDS or t["mem"] not in MEMORIES or t["dtype"] not in DTYPES:
            raise ProgramError(f"{where}: bad kind/mem/dtype {t['kind']!r}/{t['mem']!r}/{t['dtype']!r}")
        tensors[t["name"]] = TensorInfo(t["name"], t["mem"], _int(t["offset"], where),
                                        _int_tuple(t["shape"], where), t["dtype"], t["kind"])
    for name in list(header["inputs"]) + list(header["outputs"]):
        if name not in tensors:
            raise ProgramError(f"{path}: input/output {name!r} is not in the tensor table")
    instructions = [_instruction_from_dict(d, i, path) for i, d in enumerate(header["instructions"])]
    return Program(instructions, tensors, constants, _int(header["constants_offset"], f"{path}: constants_offset"),
                   list(header["inputs"]), list(header["outputs"]), str(header["target"]),
                   str(header["target_hash"]), _decode_free(header["metadata"]))
