"""Per-layer cycles add up to the model's total, and waiting is charged to the layer that causes it."""

from __future__ import annotations

import dataclasses
import math

from models import inputs_for, qdq_model

import pytest_npu.compiler as compiler
from pytest_npu import targets


def test_layers_add_up_and_a_host_turn_is_charged_to_the_host_layer():
    """The case that blamed a 192-MAC fully connected layer for 100,951 cycles: a global pool on
    the host of edge-3core, the NPU waiting for it. Its hand-over belongs to the host layer."""
    edge = targets.load("edge-3core")
    no_pool = dataclasses.replace(edge, operations=edge.operations - {"avg_pool"})
    q, shape = qdq_model("cnn")
    cm = compiler.compile(q, no_pool)
    ex = cm.run(inputs_for(shape, 1))
    rows = cm.layers(ex)
    assert sum(r["cycles"] for r in rows) == ex.summary.cycles
    (host,) = [r for r in rows if r["where"] == "host"]
    handover = math.ceil(edge.host_overhead_us * edge.clock_mhz)
    assert host["cycles"] >= handover
    fc = next(r for r in rows if r["op"] == "fully_connected")
    assert fc["cycles"] <= fc["busy_cycles"] + edge.dram_latency_cycles < handover


def test_a_weight_load_hidden_under_the_previous_layer_costs_nothing():
    """On u55-256 the next layer's first weights load while the current layer computes: the NPU
    never waits for them, so no layer is charged for that DMA, and a layer's cycles equal its
    compute instructions' busy time."""
    q, shape = qdq_model("convheavy")
    cm = compiler.compile(q, "u55-256")
    ex = cm.run(inputs_for(shape, 1))
    hidden = [r for r in ex.trace if r.opcode == "DMA_IN" and r.charged == 0]
    assert hidden, "some weight loads overlap compute"
    assert sum(r.charged for r in ex.trace) == ex.summary.cycles
