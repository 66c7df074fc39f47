"""Allocate: decide which tensors stay in SRAM, tile every step into what is left, place buffers.

Lifetime-based planning over the step sequence: a tensor produced and consumed on the NPU stays
resident in SRAM (no DRAM round trip) from its producer to its last consumer; on a target with
``io_memory = "sram"`` the graph's inputs are resident from the start and its outputs to the end.
Each step's tile scratch (weight slots, streamed stripes) lives from ``prefetch_layers`` steps
before it (the target's figure; 0: from the program start, if the SRAM holds it) to its own end,
so its first weights load under earlier layers. The Ethos-U targets prefetch one layer ahead, as
Vela does; from the program start a ResNet-8 plan took 122 KiB where Vela uses 51.
Buffers are placed greedy-by-size (TFLite Micro's GreedyMemoryPlanner, Vela's greedy allocator):
largest first, at the lowest offset free over its live range; ``MemoryPlan.peak`` is the SRAM
used, as Vela reports it (the arena's highest allocated byte). When the plan does not fit, the
largest resident tensor live where it fails is spilled to DRAM and planning restarts; only when
nothing is left to spill is it a CompileError.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import CompileError
from ..ir.graph import Graph
from ..targets.model import Target
from .legalize import Step, sample_shape
from .tiling import ALIGN, NoFit, TilePlan, align, itemsize, plan_tiles, step_shapes, weight_slice


@dataclass
class Buffer:
    key: str          # tensor root name or "scratch:<step index>"
    size: int
    first: int        # step index range [first, last] it is live
    last: int
    offset: int = -1


@dataclass
class MemoryPlan:
    homes: dict[str, str]                  # tensor root -> "sram" | "dram"
    sram_offsets: dict[str, int]           # tensor root -> SRAM offset (resident tensors)
    scratch: dict[int, int]                # step index -> SRAM offset of its scratch
    tiles: dict[int, TilePlan]             # step index -> tile plan
    peak: int                              # highest SRAM byte used
    step_peak: dict[int, int] = field(default_factory=dict)   # step -> highest SRAM byte live there
    spilled: list[str] = field(default_factory=list)
    prefetch: int = 0      # steps ahead a step's scratch is live (1: its weights load under the step before)


class Planner:
    def __init__(self, graph: Graph, steps: list[Step], aliases: dict[str, str], sram_limit: int,
                 cores: int, double_buffer: bool, target: Target | None = None):
        self.graph = graph
        self.steps = steps
        self.aliases = aliases
        self.sram_limit = sram_limit
        self.cores = cores
        self.target = target
        self.double_buffer = double_buffer

    def root(self, name: str) -> str:
        seen = 0
        while name in self.aliases and seen < 1000:
            name = self.aliases[name]
            seen += 1
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.graph.tensors[name].shape)

    def nbytes(self, name: str) -> int:
        t = self.graph.tensors[name]
        return int(np.prod(sample_shape(tuple(t.shape)), dtype=np.int64)) * itemsize(t.dtype)

    @property
    def io_in_sram(self) -> bool:
        """The target keeps graph inputs and outputs in the SRAM arena (as Vela assumes)."""
        return self.target is not None and self.target.io_memory == "sram"

    def _io_roots(self) -> tuple[set[str], set[str]]:
        return {self.root(n) for n in self.graph.inputs}, {self.root(n) for n in self.graph.outputs}

    def _initial_homes(self) -> dict[str, str]:
        homes: dict[str, str] = {}
        inputs, outputs = self._io_roots()
        forced_dram = set() if self.io_in_sram else inputs | outputs
        for step in self.steps:
            if step.where == "host":
                forced_dram.update(self.root(n) for n in step.inputs + step.outputs)
            elif step.kind == "transpose" and not step.params.get("npu_copy"):
                forced_dram.add(self.root(step.inputs[0]))      # a permuted-stride DMA reads DRAM
        for step in self.steps:
            for name in step.inputs + step.outputs:
                r = self.root(name)
                if self.graph.tensors[r].is_constant:
                    continue
                homes[r] = "dram" if r in forced_dram else "sram"
        for name in self.graph.inputs:   # an input no NPU step reads stays where the host put it
            if self.io_in_sram:
                homes.setdefault(self.root(name), "dram")
            else:
                homes[self.root(name)] = "dram"
        return homes

    def _live_ranges(self, homes) -> dict[str, tuple[int, int]]:
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            for name in step.outputs:
                first.setdefault(self.root(name), i)
                last[self.root(name)] = max(last.get(self.root(name), i), i)
            for name in step.inputs:
                r = self.root(name)
                first.setdefault(r, i)
                last[r] = i
        inputs, outputs = self._io_roots()    # SRAM-resident graph inputs exist from the start,
        for r in inputs & set(first):          # outputs until the end (the application reads them)
            first[r] = 0
        for r in outputs & set(last):
            last[r] = len(self.steps) - 1
        return {r: (first[r], last[r]) for r in first if homes.get(r) == "sram"}

    def plan(self) -> MemoryPlan:
        homes = self._initial_homes()
        spilled: list[str] = []
        for _ in range(len(homes) + 2):
            live = self._live_ranges(homes)
            result = self._try(homes, live)
            if isinstance(result, MemoryPlan):
                result.spilled = spilled
                return result
            victim = result
            homes[victim] = "dram"
            spilled.append(victim)
        raise CompileError("SRAM planning did not converge; report this model")  # pragma: no cover

    def _try(self, homes, live) -> MemoryPlan | str:
        """A plan, or the name of the resident tensor to spill before trying again."""
        tiles: dict[int, TilePlan] = {}
        resident_at = [0] * len(self.steps)
        for r, (a, b) in live.items():
            for i in range(a, b + 1):
                resident_at[i] += align(self.nbytes(r))
        for i, step in enumerate(self.steps):
            if step.where == "host":
                continue
            ins, out = step_shapes(step, self.shape)
            streamed_in = [homes.get(self.root(n)) != "sram" for n in step.inputs]
            streamed_out = homes.get(self.root(step.output)) != "sram"
            sizes = [itemsize(self.graph.tensors[n].dtype) for n in step.inputs + [step.output]]
            budget = self.sram_limit - resident_at[i]
            try:
                if step.kind in ("transpose", "matmul"):
                    tiles[i] = self._whole(step, ins, out, streamed_in, streamed_out, sizes, budget)
                else:
                    tiles[i] = plan_tiles(step, ins, out, streamed_in, streamed_out, budget,
                                          self._cores_worth_using(step, ins, out),
                                          self.double_buffer, sizes,
                                          weight_slice(step, ins, out, sizes, self.target))
            except NoFit as nofit:
                victims = [r for r, (a, b) in live.items() if a <= i <= b]
                if victims:
                    return max(victims, key=self.nbytes)
                raise CompileError(
                    f"layer '{step.name}' ({step.op}) does not fit in SRAM even as 1-row x 1-channel "
                    f"tiles: it needs {nofit.needed} bytes but only {budget} bytes of SRAM are "
                    f"available (sram_bytes={self.sram_limit}); use a target with more SRAM or a "
                    "smaller layer") from None
        residents = [Buffer(r, align(self.nbytes(r)), a, b) for r, (a, b) in live.items()]
        # A step's scratch is live from ``prefetch`` steps before it, so its weights and first
        # stripes load while earlier layers compute: as far ahead as the target allows
        # (prefetch_layers; Vela prebuffers one operation ahead) and the SRAM holds, else less.
        ahead = self.target.prefetch_layers if self.target is not None else 0
        for prefetch in sorted({ahead or len(self.steps), min(2, ahead or 2), 1, 0}, reverse=True):
            buffers = residents + [Buffer(f"scratch:{i}", align(p.scratch_bytes), max(0, i - prefetch), i)
                                   for i, p in tiles.items() if p.scratch_bytes]
            peak = _greedy_by_size(buffers)
            if peak <= self.sram_limit:
                break
        if peak > self.sram_limit:
            worst = max(buffers, key=lambda b: b.offset + b.size)
            at = range(worst.first, worst.last + 1)
            victims = [r for r, (a, b) in live.items() if any(a <= i <= b for i in at)]
            if not victims:   # pragma: no cover - scratch alone always fits its own budget
                raise CompileError(f"SRAM plan needs {peak} bytes > {self.sram_limit}")
            return max(victims, key=self.nbytes)
        step_peak = {i: max((b.offset + b.size for b in buffers if b.first <= i <= b.last), default=0)
                     for i in range(len(self.steps))}
        assert peak <= self.sram_limit
        return MemoryPlan(homes=homes,
                          sram_offsets={b.key: b.offset for b in buffers if not b.key.startswith("scratch:")},
                          scratch={int(b.key.split(":")[1]): b.offset for b in buffers
                                   if b.key.startswith("scratch:")},
                          tiles=tiles, peak=peak, step_peak=step_peak, prefetch=prefetch)

    def _cores_worth_using(self, step: Step, ins, out) -> int:
        """Split a layer across cores only when each share of its work outweighs the fixed cost
        of an extra instruction (and its DMA round trip): tiny FC heads stay on one core. The
        work estimate counts MAC-array passes the way the cost model does (idle lanes included)."""
        if self.cores == 1 or self.target is None:
            return self.cores
        mac = self.target.mac
        oh, ow, oc = out
        w = step.consts.get("weights")
        ceil = lambda a, b: -(-int(a) // int(b))  # noqa: E731
        if step.kind == "conv2d" and w is not None:
            work = ceil(oc, mac.ofm_lanes) * ceil(w.shape[2], mac.ifm_lanes) * ceil(oh * ow, mac.pixel_lanes) \
                * w.shape[0] * w.shape[1]
        elif step.kind == "depthwise_conv2d" and w is not None:
            work = ceil(oc, mac.ofm_lanes) * ceil(oh * ow, mac.pixel_lanes) * w.shape[0] * w.shape[1]
        elif step.kind == "fully_connected" and w is not None:
            work = ceil(oc, mac.ofm_lanes) * ceil(w.shape[0], mac.ifm_lanes) * ceil(oh * ow, mac.pixel_lanes)
        else:
            work = ceil(oh * ow * oc, max(1, self.target.elementwise_width))
        return self.cores if work / self.cores >= self.target.overhead_cycles / 2 else 1

    def _whole(self, step, ins, out, streamed_in, streamed_out, sizes, budget) -> TilePlan:
        """One tile for steps that are not split (matmul, transpose)."""
        from .tiling import Tile, TilePlan
        layout: dict[tuple, tuple[int, int]] = {}
        cursor = 0
        if step.kind == "matmul" or step.params.get("npu_copy"):
            for i, streamed in enumerate(streamed_in):
                if streamed:
                    n = int(np.prod(ins[i])) * sizes[i]
                    layout[("in", i, 0)] = (cursor, n)
                    cursor += align(n)
        if streamed_out:
            n = int(np.prod(out)) * sizes[-1]
            layout[("out", 0)] = (cursor, n)
            cursor += align(n)
        if cursor > budget:
            raise NoFit(cursor)
        return TilePlan([Tile((0, out[0]), (0, out[2]), 0, 0)], out[0], out[2], 1, 1, cursor, layout,
                        tuple(streamed_in), streamed_out)


def _greedy_by_size(buffers: list[Buffer]) -> int:
    """Place each buffer, largest first, at the lowest aligned offset free over its live range."""
    placed: list[Buffer] = []
    peak = 0
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.key)):
        overlapping = sorted((p for p in placed if p.first <= buf.last and buf.first <= p.last),
                             key=lambda p: p.offset)
        offset = 0
        for p in overlapping:
            if offset + buf.size <= p.offset:
                break
            offset = max(offset, align(p.offset + p.size, ALIGN))
        buf.offset = offset
        placed.append(buf)
        peak = max(peak, offset + buf.size)
    return peak


def plan_memory(graph: Graph, steps: list[Step], aliases: dict[str, str], sram_limit: int, cores: int,
                double_buffer: bool, target: Target | None = None) -> MemoryPlan:
    return Planner(graph, steps, aliases, sram_limit, cores, double_buffer, target).plan()
