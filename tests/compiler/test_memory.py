"""Tiling, SRAM planning and DRAM traffic, asserted from the emulator's trace."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from models import inputs_for, qdq_model

import pytest_npu.compiler as compiler
from pytest_npu import targets
from pytest_npu.errors import CompileError


def _dram_tensor_bytes(program, kinds):
    return sum(t.nbytes for t in program.tensors.values() if t.mem == "dram" and t.kind in kinds)


def test_chain_that_fits_moves_no_intermediate_through_dram():
    q, shape = qdq_model("chain")
    plain = dataclasses.replace(targets.load("u55-256"), io_memory="dram", weight_compression="none", blocks=None)
    cm = compiler.compile(q, plain, double_buffer=False)
    ex = cm.run(inputs_for(shape, 2))
    p = cm.program
    read = sum(r.dram_read for r in ex.trace)
    written = sum(r.dram_write for r in ex.trace)
    assert read == _dram_tensor_bytes(p, {"input", "constant"})
    assert written == _dram_tensor_bytes(p, {"output"})
    assert not [t for t in p.tensors.values() if t.kind == "intermediate" and t.mem == "dram"]


def test_graph_io_in_sram_leaves_only_encoded_weights_on_the_dram_bus():
    """u55-256 keeps the input and output in the SRAM arena (Vela's assumption) and stores weights
    encoded: the only DRAM traffic is the weight and scale streams, counted at their encoded size,
    and the sigmoid's 256-byte lookup table."""
    q, shape = qdq_model("chain")
    cm = compiler.compile(q, "u55-256")
    p = cm.program
    assert {p.tensors[n].mem for n in p.inputs + p.outputs} == {"sram"}
    ex = cm.run(inputs_for(shape, 2))
    dmas = [ins for ins in p.instructions if ins.opcode == "DMA_IN"]
    assert all(ins.src.offset >= p.constants_offset and ins.encoded_bytes > 0 for ins in dmas)
    tables = 256 * len({ins.layer for ins in p.instructions if ins.opcode == "LUT"})
    assert sum(r.dram_read for r in ex.trace) == sum(ins.encoded_bytes for ins in dmas) + tables
    assert sum(r.dram_write for r in ex.trace) == 0
    plain = dataclasses.replace(cm.target, io_memory="dram", weight_compression="none")
    reference = compiler.compile(q, plain)
    for name, value in reference.run(inputs_for(shape, 2)).outputs.items():
        np.testing.assert_array_equal(ex.outputs[name], value)


def test_double_buffered_chain_only_rereads_the_input_halo():
    q, shape = qdq_model("chain")
    cm = compiler.compile(q, "u55-256")
    ex = cm.run(inputs_for(shape, 1))
    p = cm.program
    inputs = {(p.tensors[n].offset, p.tensors[n].offset + p.tensors[n].nbytes) for n in p.inputs}
    for ins in p.instructions:
        if ins.opcode == "DMA_IN" and ins.src.offset < p.constants_offset:
            lo, hi = ins.src.extent()
            assert any(a <= lo and hi <= b for a, b in inputs), ins   # only graph inputs are read back
    assert sum(r.dram_write for r in ex.trace) == _dram_tensor_bytes(p, {"output"})
    assert ex.summary.sram_peak_bytes <= cm.target.sram_bytes


def test_model_larger_than_sram_compiles_by_tiling_with_identical_outputs():
    q, shape = qdq_model("convheavy")
    big = targets.load("u55-256")
    small = dataclasses.replace(big, sram_bytes=12 * 1024)
    x = inputs_for(shape, 2)
    cm_big, cm_small = compiler.compile(q, big), compiler.compile(q, small)
    weights = sum(t.nbytes for t in cm_small.program.tensors.values() if t.kind == "constant")
    largest_activation = max(t.nbytes for t in cm_big.program.tensors.values() if t.kind != "constant")
    assert weights + largest_activation > small.sram_bytes          # really does not fit whole
    assert cm_small.memory.spilled                                  # intermediates went to DRAM
    assert len(cm_small.program.instructions) > len(cm_big.program.instructions)
    ex_big, ex_small = cm_big.run_quantized(_ints(cm_big, x)), cm_small.run_quantized(_ints(cm_small, x))
    for name in cm_big.program.outputs:
        np.testing.assert_array_equal(ex_big.outputs[name], ex_small.outputs[name])
    assert ex_small.summary.sram_peak_bytes <= small.sram_bytes
    assert cm_small.memory.peak <= small.sram_bytes


def test_sram_limit_option_tiles_like_a_smaller_target():
    q, shape = qdq_model("convheavy")
    cm = compiler.compile(q, "u55-256", sram_limit_bytes=16 * 1024)
    assert cm.memory.peak <= 16 * 1024
    ex = cm.run_quantized(_ints(cm, inputs_for(shape, 1)))
    assert ex.summary.sram_peak_bytes <= 16 * 1024


def test_target_too_small_for_any_tiling_names_layer_and_bytes():
    q, _ = qdq_model("convheavy")
    tiny = dataclasses.replace(targets.load("u55-256"), sram_bytes=1024)
    with pytest.raises(CompileError) as info:
        compiler.compile(q, tiny)
    message = str(info.value)
    assert "conv_" in message and "needs" in message and "1024 bytes" in message
    needed = int(message.split("needs ")[1].split(" bytes")[0])
    assert needed > 1024


def _ints(cm, x):
    name = cm.program.inputs[0]
    return {name: cm.graph.input_quant[name].quantize(x)}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(["cnn", "chain", "slice"]), sram_kib=st.integers(2, 64),
       cores=st.integers(1, 3), double_buffer=st.booleans())
def test_outputs_do_not_depend_on_tiling_or_scheduling(model, sram_kib, cores, double_buffer):
    """Any SRAM size, core count and buffering that compiles gives bit-identical outputs."""
    q, shape = qdq_model(model)
    reference = compiler.compile(q, "edge-3core", cores=1, double_buffer=False)
    try:
        cm = compiler.compile(q, "edge-3core", sram_limit_bytes=sram_kib * 1024, cores=cores,
                              double_buffer=double_buffer)
    except CompileError as exc:
        assert "does not fit in SRAM" in str(exc)
        assume(False)
    ints = _ints(reference, inputs_for(shape, 2, seed=sram_kib))
    expected = reference.run_quantized(ints)
    got = cm.run_quantized(ints)       # the emulator faults on any hazard the deps miss
    for name in reference.program.outputs:
        np.testing.assert_array_equal(got.outputs[name], expected.outputs[name])
    assert got.summary.sram_peak_bytes <= sram_kib * 1024
