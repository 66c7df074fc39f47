"""The Program file format (exact round trip, refusals that name the file) and the assembly text."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest
from conv_program import build_conv_program, make_conv_net

from pytest_npu import targets
from pytest_npu.cli import main as cli_main
from pytest_npu.errors import ProgramError
from pytest_npu.npu import Emulator, Program
from pytest_npu.npu.isa import INSTRUCTIONS, HostOp, Lut
from pytest_npu.npu.program import FORMAT_VERSION, ProgramBuilder


@pytest.fixture(scope="module")
def demo_program():
    return build_conv_program(targets.load("edge-3core"), make_conv_net(size=8, cmid=12))


def _with_host_and_lut(target):
    """Covers the free-form parts: HostOp attrs with tuples, arrays, floats, None; a LUT table."""
    b = ProgramBuilder(target.name, target.content_hash())
    x, y = b.input("x", (4, 6)), b.output("y", (6, 4))
    s = b.sram("x.s", (4, 6))
    from pytest_npu.npu.isa import DmaIn
    b.emit(DmaIn(x, s))
    b.emit(Lut(s, s, table=tuple(range(127, -129, -1)), deps=(0,), layer="neg"))
    q = {"scale": [0.1], "zero_point": [0], "dtype": "int8", "axis": None}
    attrs = {"perm": (1, 0), "in_quant": [q], "out_quant": [q], "gamma": np.arange(3, dtype=np.float32) / 3,
             "eps": 1e-5, "nested": {"t": (1, (2, 3)), "l": [1.5, None, "s"]}}
    from pytest_npu.npu.isa import DmaOut
    b.emit(DmaOut(s, b.dram("x.back", (4, 6)), deps=(1,)))
    b.emit(HostOp("transpose", (b.tensors["x.back"].operand(),), (y,), attrs=attrs, reason="why", deps=(2,)))
    return b.build(note="hand-built", shape=(4, 6))


def test_round_trip_is_exact(tmp_path, demo_program):
    path = demo_program.save(tmp_path / "demo.npuprog")
    loaded = Program.load(path)
    assert loaded == demo_program
    assert loaded.instructions[0].__class__ is demo_program.instructions[0].__class__
    strided = [i for i in loaded.instructions if getattr(i, "ofm", None) is not None and i.ofm.strides]
    assert strided, "the demo's channel-slice operands must survive with their strides"


def test_round_trip_keeps_free_form_types(tmp_path, u55):
    program = _with_host_and_lut(u55)
    loaded = Program.load(program.save(tmp_path / "p.npuprog"))
    assert loaded.metadata == {"note": "hand-built", "shape": (4, 6), "sram_bytes": program.metadata["sram_bytes"]}
    host = loaded.instructions[-1]
    original = program.instructions[-1]
    assert isinstance(host, HostOp) and host.inputs == original.inputs and host.outputs == original.outputs
    assert host.attrs["perm"] == (1, 0) and host.attrs["nested"] == {"t": (1, (2, 3)), "l": [1.5, None, "s"]}
    assert host.attrs["eps"] == 1e-5 and host.attrs["gamma"].dtype == np.float32
    np.testing.assert_array_equal(host.attrs["gamma"], original.attrs["gamma"])
    assert loaded.instructions[:-1] == program.instructions[:-1]
    x = np.arange(-12, 12, dtype=np.int8).reshape(1, 4, 6)
    a, b = Emulator(u55).run(program, {"x": x}), Emulator(u55).run(loaded, {"x": x})
    np.testing.assert_array_equal(a.outputs["y"], b.outputs["y"])
    np.testing.assert_array_equal(a.outputs["y"][0], (-1 - x[0]).T)     # LUT negates, host transposes


def _rewrite(path, tmp_path, edit=None, constants=None):
    with zipfile.ZipFile(path) as z:
        header, blob = json.loads(z.read("program.json")), z.read("constants.bin")
    if edit:
        edit(header)
    out = tmp_path / "edited.npuprog"
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("program.json", json.dumps(header))
        z.writestr("constants.bin", blob if constants is None else constants)
    return out


def _first_conv(header):
    return next(d for d in header["instructions"] if d["opcode"] == "CONV2D")


@pytest.mark.parametrize("edit, match", [
    (lambda h: h.update(version=FORMAT_VERSION + 1), f"format version {FORMAT_VERSION + 1} is not supported"),
    (lambda h: h.update(format="something-else"), "not a pytest-npu-program header"),
    (lambda h: h["instructions"][0].update(opcode="FFT"), "instruction 0 has unknown opcode 'FFT'"),
    (lambda h: h["instructions"][1].update(bogus=1), "unknown fields \\['bogus'\\]"),
    (lambda h: _first_conv(h).pop("ifm"), "CONV2D is incomplete"),
    (lambda h: _first_conv(h)["ofm"].update(offset="12"), "expected an integer"),
    (lambda h: h.pop("tensors"), "lacks \\['tensors'\\]"),
])
def test_bad_headers_are_refused_naming_the_file(tmp_path, demo_program, edit, match):
    path = demo_program.save(tmp_path / "demo.npuprog")
    bad = _rewrite(path, tmp_path, edit)
    with pytest.raises(ProgramError, match=match) as info:
        Program.load(bad)
    assert str(bad) in str(info.value)


def test_corrupt_files_are_refused(tmp_path, demo_program):
    path = demo_program.save(tmp_path / "demo.npuprog")
    truncated = tmp_path / "truncated.npuprog"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    garbage = tmp_path / "garbage.npuprog"
    garbage.write_bytes(b"definitely not a zip file")
    for bad in (truncated, garbage):
        with pytest.raises(ProgramError, match=re.escape(str(bad)) + ": corrupt program file"):
            Program.load(bad)
    flipped = _rewrite(path, tmp_path, constants=b"\x01" + Program.load(path).constants[1:])
    with pytest.raises(ProgramError, match="constants.bin is corrupt"):
        Program.load(flipped)
    with pytest.raises(ProgramError, match="no such program file"):
        Program.load(tmp_path / "missing.npuprog")
    empty = tmp_path / "empty.npuprog"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(ProgramError, match="has no program.json"):
        Program.load(empty)


def test_every_opcode_has_a_json_form(tmp_path, demo_program):
    """The format covers the whole ISA: each opcode name maps back to its class."""
    header = json.loads(zipfile.ZipFile(demo_program.save(tmp_path / "p.npuprog")).read("program.json"))
    assert header["format"] == "pytest-npu-program" and header["version"] == FORMAT_VERSION
    assert {d["opcode"] for d in header["instructions"]} <= set(INSTRUCTIONS)


def test_asm_lists_memory_map_and_one_line_per_instruction(demo_program):
    asm = demo_program.to_asm()
    lines = asm.splitlines()
    body = [line for line in lines if not line.startswith(";")]
    assert len(body) == len(demo_program.instructions)
    assert "; memory map:" in asm and "input" in asm and "constant" in asm
    conv = next(line for line in body if "CONV2D" in line and "DEPTHWISE" not in line)
    assert re.search(r"^\s*\d+ core0\.mac\s+CONV2D\s+ifm:x\.sram=sram\[0x[0-9a-f]+:\+1024\] int8\[8,8,16\]", conv)
    assert "strides=" in conv and "padding=(1, 1, 1, 1)" in conv and "requant(" in conv and "deps=[" in conv
    assert conv.endswith("; conv1")
    dma = body[0]
    assert "dma0" in dma and "DMA_IN" in dma and "dram[0x" in dma


def test_cli_run_prints_summary_and_engine_table(tmp_path, demo_program, capsys):
    path = demo_program.save(tmp_path / "demo.npuprog")
    assert cli_main(["run", str(path), "--target", "edge-3core", "--batch", "2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    run = Emulator(targets.load("edge-3core")).timing(demo_program).summary
    assert f"{run.cycles} cycles" in out and "efficiency" in out
    assert re.search(r"core1\.mac\s+\d+\s+\d+\s+\d+\.\d%", out)
    assert cli_main(["run", str(tmp_path / "nope.npuprog"), "--target", "u55-256"]) == 2
