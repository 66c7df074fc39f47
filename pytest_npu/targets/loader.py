"""Read a target TOML file, check every key, and build a :class:`Target`.

The schema is one table (``SCHEMA``): each TOML key has a kind, a check, the Target field it
fills, and a hint of what to write instead. Validation collects every problem in the file and
raises one :class:`TargetError` listing them, each naming the file and the dotted key, so a user
fixes a hand-written target in one pass instead of one error per run.

TOML layout (the built-ins in ``builtin/`` document every key with a comment)::

    name, description, sources, model_note, clock_mhz, cores, rounding, fallback,
             [vela_accelerator]
    [core]   ofm_lanes, ifm_lanes, pixel_lanes, macs_per_cycle, int16_factor,
             elementwise_width, lut_width, overhead_cycles
    [memory] sram_kib, sram_bytes_per_cycle, dram_mib, dram_bytes_per_cycle,
             dram_latency_cycles, dram_burst_bytes, dma_channels,
             [sram_latency_cycles, sram_burst_bytes, io_memory, prefetch_layers, weight_compression]
    [isa]    operations, dtypes, max_kernel, max_stride, max_dilation, max_channels, max_padding
    [host]   ops_per_second, overhead_us
    [energy] mac_int8_pj, mac_int16_pj, sram_read_pj_per_byte, sram_write_pj_per_byte,
             dram_pj_per_byte, elementwise_pj, lut_pj, host_pj_per_op, static_mw
    [blocks] (optional table: block-based MAC timing) micro_block, max_block, buffer_banks,
             ifm_granules, elementwise_ifm_granules, accumulator_granules, output_cycles,
             output_cycles_max_pool, output_cycles_add, output_cycles_mul, output_cycles_int32,
             activation_cycles_relu

Keys in [brackets] are optional (their defaults keep older target files meaning what they meant);
the ``[blocks]`` table is optional as a whole, and complete when present.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import TargetError
from ..npu.isa import OPERATIONS, ROUNDINGS
from .model import BlockTiming, Energy, Limits, MacArray, Target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

KIB = 1024
MIB = 1024 * 1024
ACTIVATION_DTYPES = ("int8", "int16")
ROUNDING_MODES = ROUNDINGS   # single | double (TOSA RESCALE) | tflite (LiteRT reference kernels, op by op)
FALLBACKS = ("host", "error")
IO_MEMORIES = ("dram", "sram")
WEIGHT_COMPRESSIONS = ("none", "ethos-u")
VELA_ACCELERATORS = ("ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256",
                     "ethos-u65-512")
OPTIONAL_TABLES = ("blocks",)
_REQUIRED = object()
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Key:
    """One TOML key: its kind ("str", "int", "number", "str_list") and an optional value check.

    ``check`` returns ``None`` when the value is fine, else the fix to suggest.
    """

    kind: str
    check: Check | None = None
    default: Any = _REQUIRED      # a value: the key may be left out

    @property
    def optional(self) -> bool:
        return self.default is not _REQUIRED


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else "must be at least 1"


def _fraction(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be in (0, 1]: the int16 MAC rate relative to int8"


def _one_of(*allowed: str) -> Check:
    def check(value: str) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(map(repr, allowed))}"
    return check


def _subset_of(allowed: frozenset[str] | tuple[str, ...], required: str) -> Check:
    def check(values: list[str]) -> str | None:
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            hints = [f"{u!r}" + did_you_mean(u, allowed) for u in unknown]
            return f"has unknown entries {', '.join(hints)}; allowed: {', '.join(sorted(allowed))}"
        duplicated = sorted({v for v in values if values.count(v) > 1})
        if duplicated:
            return f"lists {', '.join(map(repr, duplicated))} more than once"
        if required not in values:
            return f"must include {required!r}"
        return None
    return check


def _int_list(length: int, check: Check = _at_least_one) -> Check:
    def inner(values: list[int]) -> str | None:
        if len(values) != length:
            return f"must list {length} integers, got {len(values)}"
        problems = [check(v) for v in values]
        return next((f"entries {p}" for p in problems if p), None)
    return inner


def _target_name(value: str) -> str | None:
    if NAME_PATTERN.fullmatch(value):
        return None
    return "must be a short identifier (letters, digits, '.', '_', '-'), e.g. \"my-npu\""


def _not_blank(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _sources(values: list[str]) -> str | None:
    return None if values and all(v.strip() for v in values) else (
        "must list at least one public reference the figures follow")


SCHEMA: dict[str, dict[str, Key]] = {
    "": {
        "name": Key("str", _target_name),
        "description": Key("str", _not_blank),
        "sources": Key("str_list", _sources),
        "model_note": Key("str", _not_blank),
        "clock_mhz": Key("number", _positive),
        "cores": Key("int", _at_least_one),
        "rounding": Key("str", _one_of(*ROUNDING_MODES)),
        "fallback": Key("str", _one_of(*FALLBACKS)),
        "vela_accelerator": Key("str", _one_of("", *VELA_ACCELERATORS), default=""),
    },
    "core": {
        "ofm_lanes": Key("int", _at_least_one),
        "ifm_lanes": Key("int", _at_least_one),
        "pixel_lanes": Key("int", _at_least_one),
        "macs_per_cycle": Key("int", _at_least_one),
        "int16_factor": Key("number", _fraction),
        "elementwise_width": Key("int", _at_least_one),
        "lut_width": Key("int", _at_least_one),
        "overhead_cycles": Key("int", _non_negative),
    },
    "memory": {
        "sram_kib": Key("number", _positive),
        "sram_bytes_per_cycle": Key("number", _positive),
        "dram_mib": Key("number", _positive),
        "dram_bytes_per_cycle": Key("number", _positive),
        "dram_latency_cycles": Key("int", _non_negative),
        "dram_burst_bytes": Key("int", _at_least_one),
        "dma_channels": Key("int", _at_least_one),
        "sram_latency_cycles": Key("int", _non_negative, default=0),
        "sram_burst_bytes": Key("int", _non_negative, default=0),
        "io_memory": Key("str", _one_of(*IO_MEMORIES), default="dram"),
        "prefetch_layers": Key("int", _non_negative, default=0),
        "weight_compression": Key("str", _one_of(*WEIGHT_COMPRESSIONS), default="none"),
    },
    "isa": {
        "operations": Key("str_list", _subset_of(OPERATIONS, "dma")),
        "dtypes": Key("str_list", _subset_of(ACTIVATION_DTYPES, "int8")),
        "max_kernel": Key("int", _at_least_one),
        "max_stride": Key("int", _at_least_one),
        "max_dilation": Key("int", _at_least_one),
        "max_channels": Key("int", _at_least_one),
        "max_padding": Key("int", _non_negative),
    },
    "host": {
        "ops_per_second": Key("number", _positive),
        "overhead_us": Key("number", _non_negative),
    },
    "energy": {name: Key("number", _non_negative) for name in (
        "mac_int8_pj", "mac_int16_pj", "sram_read_pj_per_byte", "sram_write_pj_per_byte",
        "dram_pj_per_byte", "elementwise_pj", "lut_pj", "host_pj_per_op", "static_mw")},
    "blocks": {
        "micro_block": Key("int_list", _int_list(2)),
        "max_block": Key("int_list", _int_list(3)),
        "buffer_banks": Key("int", _at_least_one),
        "ifm_granules": Key("int_list", _int_list(3)),
        "elementwise_ifm_granules": Key("int_list", _int_list(2)),
        "accumulator_granules": Key("int_list", _int_list(3)),
        **{name: Key("number", _non_negative) for name in (
            "output_cycles", "output_cycles_max_pool", "output_cycles_add", "output_cycles_mul",
            "output_cycles_int32", "activation_cycles_relu")},
    },
}

# Physically meaningful ranges: a figure outside them is a typo (1e9 cores would allocate a schedule
# per core; an energy of 1e308 pJ overflows to inf mJ), so it is refused with the range and why.
# Each upper bound is orders of magnitude above any NPU built today.
BOUNDS: dict[str, tuple[float, float, str]] = {
    "clock_mhz": (0.001, 100_000, "MHz"),
    "cores": (1, 1024, "cores"),
    "core.ofm_lanes": (1, 65536, "lanes"), "core.ifm_lanes": (1, 65536, "lanes"),
    "core.pixel_lanes": (1, 65536, "lanes"), "core.macs_per_cycle": (1, 2**30, "MACs per cycle and core"),
    "core.elementwise_width": (1, 65536, "elements per cycle"), "core.lut_width": (1, 65536, "lookups per cycle"),
    "core.overhead_cycles": (0, 10**7, "cycles per instruction"),
    "memory.sram_kib": (1 / KIB, 2**30, "KiB (1 byte..1 TiB)"), "memory.sram_bytes_per_cycle": (1e-6, 2**20, "bytes per cycle"),
    "memory.dram_mib": (1 / MIB, 2**20, "MiB (1 byte..1 TiB)"), "memory.dram_bytes_per_cycle": (1e-6, 2**20, "bytes per cycle"),
    "memory.dram_latency_cycles": (0, 10**8, "cycles"), "memory.dram_burst_bytes": (1, 2**20, "bytes"),
    "memory.dma_channels": (1, 1024, "channels"),
    "isa.max_kernel": (1, 65536, "taps"), "isa.max_stride": (1, 65536, "pixels"),
    "isa.max_dilation": (1, 65536, "pixels"), "isa.max_channels": (1, 2**24, "channels"),
    "isa.max_padding": (0, 65536, "pixels"),
    "host.ops_per_second": (1, 1e18, "operations per second"), "host.overhead_us": (0, 1e9, "microseconds"),
    **{f"energy.{k}": (0, 1e9, "pJ") for k in (
        "mac_int8_pj", "mac_int16_pj", "sram_read_pj_per_byte", "sram_write_pj_per_byte", "dram_pj_per_byte",
        "elementwise_pj", "lut_pj", "host_pj_per_op")},
    "energy.static_mw": (0, 1e9, "mW"),
}


def _out_of_bounds(dotted: str, value: Any) -> str | None:
    bound = BOUNDS.get(dotted)
    if bound is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    lo, hi, unit = bound
    if lo <= value <= hi:
        return None
    return (f"{value!r} is outside the physically meaningful range {lo:g}..{hi:g} {unit}; "
            "check the figure (a typo or a missing unit conversion?)")


_KIND_TEXT = {"str": "a string", "int": "an integer", "number": "a number",
              "str_list": "a list of strings", "int_list": "a list of integers"}


def _dotted(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def did_you_mean(word: str, candidates) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(section: str, key: str) -> str:
    """Say what to do with an unknown key: fix a misspelling, or move a key to its table."""
    hint = did_you_mean(key, SCHEMA[section])
    if hint:
        return f"unknown key{hint}; fix the spelling"
    homes = [s for s, keys in SCHEMA.items() if key in keys and s != section]
    if homes:
        return f"not a key of {'[' + section + ']' if section else 'the top level'}; move it " + (
            f"under [{homes[0]}]" if homes[0] else "to the top level, before any table")
    return "unknown key; remove it (the known keys are listed in `pytest-npu targets NAME`)"


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "int_list":
        return isinstance(value, list) and all(_kind_ok("int", v) for v in value)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _value_problem(spec: Key, value: Any) -> str | None:
    if not _kind_ok(spec.kind, value):
        return f"must be {_KIND_TEXT[spec.kind]}"
    return spec.check(value) if spec.check is not None else None


class _Problems:
    """Collects problems as ``dotted.key: what is wrong and what to do`` lines."""

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []

    def add(self, dotted: str, message: str) -> None:
        self.lines.append(f"{dotted}: {message}")

    def raise_if_any(self) -> None:
        if self.lines:
            count = len(self.lines)
            listing = "\n".join(f"  - {line}" for line in self.lines)
            raise TargetError(
                f"target file {self.source} has {count} problem{'s' if count > 1 else ''}:\n{listing}\n"
                "Fix the keys above (see the built-in targets, `pytest-npu targets NAME`, for a complete file).")


def _check_layout(data: dict[str, Any], problems: _Problems) -> dict[str, dict[str, Any]]:
    """Split the document into its tables, reporting unknown, missing and mistyped keys."""
    tables: dict[str, dict[str, Any]] = {"": {}}
    for key, value in data.items():
        if key in SCHEMA and key:
            if isinstance(value, dict):
                tables[key] = value
            else:
                problems.add(key, f"must be a table: write [{key}] on its own line and its keys below it")
        elif key in SCHEMA[""]:
            tables[""][key] = value
        else:
            if isinstance(value, dict):
                hint = did_you_mean(key, [s for s in SCHEMA if s])
                problems.add(key, f"unknown table{hint}; fix the spelling or remove it")
            else:
                problems.add(key, _unknown_key("", key))
    for section, keys in SCHEMA.items():
        if section not in tables:
            if section not in data and section not in OPTIONAL_TABLES:  # a plain value is reported above
                problems.add(section, f"missing table [{section}] (keys: {', '.join(keys)})")
            continue
        table = tables[section]
        for key, value in table.items():
            dotted = _dotted(section, key)
            if key not in keys:
                problems.add(dotted, _unknown_key(section, key))
            elif message := _value_problem(keys[key], value):
                shown = "" if keys[key].kind == "str_list" and isinstance(value, list) else f", got {value!r}"
                problems.add(dotted, message + shown)
            elif message := _out_of_bounds(dotted, value):
                problems.add(dotted, message)
        for key in keys:
            if key not in table and keys[key].optional:
                table[key] = keys[key].default
            elif key not in table:
                problems.add(_dotted(section, key), f"missing; add `{key} = ...` under "
                             f"{'[' + section + ']' if section else 'the top level (before any table)'}")
    return tables


def _whole_bytes(problems: _Problems, dotted: str, amount: float, unit: int) -> int:
    total = amount * unit
    if total != int(total):
        problems.add(dotted, f"{amount!r} x {unit} is not a whole number of bytes; round it")
    return int(total)


def from_dict(data: dict[str, Any], source: str = "<dict>", path: Path | None = None) -> Target:
    """Validate parsed TOML (``source`` names it in errors) and build the Target.

    ``base = "u55-256"`` (or a .toml path) starts from that target: see :func:`inherit`.
    """
    if not isinstance(data, dict):
        raise TargetError(f"target {source} must be a mapping of TOML keys, got {type(data).__name__}")
    if BASE_KEY in data:
        data, base = inherit(data, source, path), data[BASE_KEY]
        try:
            return from_dict(data, source, path)
        except TargetError as exc:
            raise TargetError(f"{exc}\n(keys {source} does not set come from its base {base!r})") from None
    problems = _Problems(source)
    tables = _check_layout(data, problems)
    problems.raise_if_any()
    top, core, memory, isa = tables[""], tables["core"], tables["memory"], tables["isa"]
    host, energy = tables["host"], tables["energy"]
    mac = MacArray(core["ofm_lanes"], core["ifm_lanes"], core["pixel_lanes"])
    if mac.macs_per_cycle != core["macs_per_cycle"]:
        problems.add("core.macs_per_cycle",
                     f"is {core['macs_per_cycle']} but ofm_lanes x ifm_lanes x pixel_lanes = "
                     f"{mac.ofm_lanes} x {mac.ifm_lanes} x {mac.pixel_lanes} = {mac.macs_per_cycle}; "
                     "fix the lanes or set macs_per_cycle to their product")
    blocks = _blocks(tables.get("blocks"), mac, problems)
    sram_bytes = _whole_bytes(problems, "memory.sram_kib", memory["sram_kib"], KIB)
    dram_bytes = _whole_bytes(problems, "memory.dram_mib", memory["dram_mib"], MIB)
    problems.raise_if_any()
    return Target(
        name=top["name"], description=top["description"], sources=tuple(top["sources"]),
        clock_mhz=float(top["clock_mhz"]), cores=top["cores"], mac=mac,
        int16_factor=float(core["int16_factor"]), elementwise_width=core["elementwise_width"],
        lut_width=core["lut_width"], overhead_cycles=core["overhead_cycles"],
        sram_bytes=sram_bytes, sram_bytes_per_cycle=float(memory["sram_bytes_per_cycle"]),
        dram_bytes=dram_bytes, dram_bytes_per_cycle=float(memory["dram_bytes_per_cycle"]),
        dram_latency_cycles=memory["dram_latency_cycles"], dram_burst_bytes=memory["dram_burst_bytes"],
        dma_channels=memory["dma_channels"], rounding=top["rounding"],
        operations=frozenset(isa["operations"]), dtypes=frozenset(isa["dtypes"]),
        limits=Limits(**{k: isa[k] for k in ("max_kernel", "max_stride", "max_dilation",
                                             "max_channels", "max_padding")}),
        fallback=top["fallback"], host_ops_per_second=float(host["ops_per_second"]),
        host_overhead_us=float(host["overhead_us"]),
        energy=Energy(**{k: float(v) for k, v in energy.items()}),
        blocks=blocks, sram_latency_cycles=memory["sram_latency_cycles"],
        sram_burst_bytes=memory["sram_burst_bytes"], io_memory=memory["io_memory"],
        prefetch_layers=memory["prefetch_layers"],
        weight_compression=memory["weight_compression"], vela_accelerator=top["vela_accelerator"],
        path=path, model_note=top["model_note"],
    )


def _blocks(table: dict[str, Any] | None, mac: MacArray, problems: _Problems) -> BlockTiming | None:
    """The [blocks] table as a BlockTiming; its micro-block must be the MAC array's pixel lanes."""
    if table is None:
        return None
    height, width = table["micro_block"]
    if height * width != mac.pixel_lanes:
        problems.add("blocks.micro_block", f"is {height} x {width} = {height * width} output pixels but "
                     f"core.pixel_lanes is {mac.pixel_lanes}; the micro-block is the array's pixel lanes")
    return BlockTiming(
        micro_block=(height, width), max_block=tuple(table["max_block"]), buffer_banks=table["buffer_banks"],
        ifm_granules=tuple(table["ifm_granules"]), elementwise_ifm_granules=tuple(table["elementwise_ifm_granules"]),
        accumulator_granules=tuple(table["accumulator_granules"]),
        **{k: float(table[k]) for k in ("output_cycles", "output_cycles_max_pool", "output_cycles_add",
                                        "output_cycles_mul", "output_cycles_int32", "activation_cycles_relu")})


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"target file {source} is not valid TOML: {exc}. Fix the syntax there "
                          "(strings need quotes, tables are written [name]).") from None


def parse(text: str, source: str = "<string>", path: Path | None = None) -> Target:
    """Parse TOML text; a syntax error becomes a TargetError naming ``source`` and the line."""
    return from_dict(_toml(text, source), source, path)


# --------------------------------------------------------------------------------------------------
# inheritance: a target file that says only how it differs from another

BASE_KEY = "base"


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TargetError(f"target file {path} does not exist; pass a built-in name or the path "
                          "of an existing .toml file") from None
    except IsADirectoryError:
        raise TargetError(f"target file {path} is a directory; pass the path of a .toml file") from None
    except UnicodeDecodeError as exc:
        raise TargetError(f"target file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise TargetError(f"target file {path} cannot be read: {exc.strerror}") from None


def _base_file(base: Any, source: str, path: Path | None) -> Path:
    """The file ``base`` names: a built-in target, or a .toml path relative to the inheriting file."""
    from importlib import resources

    builtin = resources.files("pytest_npu.targets") / "builtin"
    names = sorted(entry.name[: -len(".toml")] for entry in builtin.iterdir() if entry.name.endswith(".toml"))
    if not isinstance(base, str) or not base.strip():
        raise TargetError(f"target file {source}: base: must be a built-in target name ({', '.join(names)}) or "
                          f"the path of a .toml file, got {base!r}")
    if base in names:
        return Path(str(builtin / f"{base}.toml"))
    if base.endswith(".toml") or "/" in base or "\\" in base:
        relative = Path(base).expanduser()
        return relative if relative.is_absolute() or path is None else path.parent / relative
    raise TargetError(f"target file {source}: base: unknown target {base!r}{did_you_mean(base, names)}; "
                      f"built-in targets: {', '.join(names)}, or the path of a .toml file")


def inherit(data: dict[str, Any], source: str, path: Path | None, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """``data`` laid over its ``base``: tables merge key by key, any other value (lists included)
    replaces the base's. The base must be a valid target on its own (its problems name its file),
    and the inheriting file must set its own ``name``, so its figures never pass for the base's."""
    base = data[BASE_KEY]
    base_path = _base_file(base, source, path)
    chain = (*_chain, str(path.resolve() if path is not None else source))
    if str(base_path.resolve()) in chain:
        raise TargetError(f"target file {source}: base: {base!r} inherits back from {source} "
                          f"({' -> '.join([*chain, str(base_path.resolve())])}); break the cycle")
    base_data = _toml(_read(base_path), str(base_path))
    if BASE_KEY in base_data:
        base_data = inherit(base_data, str(base_path), base_path, chain)
    base_target = from_dict(copy.deepcopy(base_data), str(base_path), base_path)
    if "name" not in data:
        raise TargetError(f"target file {source}: name: missing; a target that inherits (base = {base!r}) "
                          "must set its own name, or its figures would be reported as the base's")
    if data["name"] == base_target.name:
        raise TargetError(f"target file {source}: name: {data['name']!r} is the name of its base; give the "
                          "new target its own name, or its figures would be reported as the base's")
    merged = copy.deepcopy(base_data)
    for key, value in data.items():
        if key == BASE_KEY:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_file(path: Path) -> Target:
    """Load and validate one TOML file."""
    return parse(_read(path), str(path), path)


def _toml_value(value: Any) -> str:
    if isinstance(value, (list, tuple, frozenset, set)):
        items = [_toml_value(v) for v in (sorted(value) if isinstance(value, (set, frozenset)) else value)]
        inline = "[" + ", ".join(items) + "]"
        return inline if len(inline) <= 90 else "[\n" + "".join(f"    {item},\n" for item in items) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def to_toml(target: Target) -> str:
    """Write a Target back as TOML that :func:`parse` reads to an equal Target (no comments)."""
    values: dict[str, dict[str, Any]] = {
        "": {"name": target.name, "description": target.description, "sources": list(target.sources),
             "model_note": target.model_note, "clock_mhz": target.clock_mhz, "cores": target.cores,
             "rounding": target.rounding, "fallback": target.fallback,
             "vela_accelerator": target.vela_accelerator},
        "core": {"ofm_lanes": target.mac.ofm_lanes, "ifm_lanes": target.mac.ifm_lanes,
                 "pixel_lanes": target.mac.pixel_lanes, "macs_per_cycle": target.mac.macs_per_cycle,
                 "int16_factor": target.int16_factor, "elementwise_width": target.elementwise_width,
                 "lut_width": target.lut_width, "overhead_cycles": target.overhead_cycles},
        "memory": {"sram_kib": target.sram_bytes / KIB, "sram_bytes_per_cycle": target.sram_bytes_per_cycle,
                   "dram_mib": target.dram_bytes / MIB, "dram_bytes_per_cycle": target.dram_bytes_per_cycle,
                   "dram_latency_cycles": target.dram_latency_cycles,
                   "dram_burst_bytes": target.dram_burst_bytes, "dma_channels": target.dma_channels,
                   "sram_latency_cycles": target.sram_latency_cycles,
                   "sram_burst_bytes": target.sram_burst_bytes, "io_memory": target.io_memory,
                   "prefetch_layers": target.prefetch_layers,
                   "weight_compression": target.weight_compression},
        "isa": {"operations": target.operations, "dtypes": target.dtypes,
                **{k: getattr(target.limits, k) for k in SCHEMA["isa"] if k.startswith("max_")}},
        "host": {"ops_per_second": target.host_ops_per_second, "overhead_us": target.host_overhead_us},
        "energy": {k: getattr(target.energy, k) for k in SCHEMA["energy"]},
    }
    if target.blocks is not None:
        values["blocks"] = {k: list(v) if isinstance(v, tuple) else v
                            for k, v in asdict(target.blocks).items()}
    lines: list[str] = []
    for section, table in values.items():
        if section:
            lines.append(f"\n[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"
