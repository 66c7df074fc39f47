"""Schedule: explicit dependencies between instructions and the assignment of DMA channels.

The emulator starts an instruction as soon as its engine is free and its ``deps`` are done, and
faults on any hazard the deps do not cover. So every emitted instruction gets a dependency on the
last writer of each byte range it reads (RAW), and on the last writer and every reader since of
each range it writes (WAW, WAR: the reuse of an SRAM slot waits for its last reader). Ranges are
the operands' byte extents, tracked per address space (SRAM, and each DRAM tensor separately so
the lists stay short); the read-only constants image needs no tracking.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field

from ..npu.isa import Instruction, Operand


@dataclass
class _Record:
    lo: int
    hi: int
    writer: int | None
    readers: list[int] = field(default_factory=list)


class _IntervalMap:
    """Disjoint byte intervals of one address space, each with its last writer and readers since.

    Accesses split intervals at their boundaries, so a dependency is added only for bytes that
    really overlap (a stale record spanning two tiles would serialise cores for nothing).
    """

    def __init__(self):
        self.starts: list[int] = []
        self.records: list[_Record] = []

    def _split(self, point: int) -> None:
        i = bisect.bisect_right(self.starts, point) - 1
        if i < 0:
            return
        rec = self.records[i]
        if rec.lo < point < rec.hi:
            right = _Record(point, rec.hi, rec.writer, list(rec.readers))
            rec.hi = point
            self.starts.insert(i + 1, point)
            self.records.insert(i + 1, right)

    def _span(self, lo: int, hi: int) -> tuple[int, int]:
        """Split at lo/hi; return the index range of records inside [lo, hi)."""
        self._split(lo)
        self._split(hi)
        first = bisect.bisect_left(self.starts, lo)
        last = bisect.bisect_left(self.starts, hi)
        return first, last

    def read(self, index: int, lo: int, hi: int, deps: set[int]) -> None:
        first, last = self._span(lo, hi)
        cursor = lo
        gaps = []
        for rec in self.records[first:last]:
            if rec.writer is not None:
                deps.add(rec.writer)
            rec.readers.append(index)
            if rec.lo > cursor:
                gaps.append((cursor, rec.lo))
            cursor = rec.hi
        if cursor < hi:
            gaps.append((cursor, hi))
        for g_lo, g_hi in gaps:      # never written by the program (inputs): remember the reader
            i = bisect.bisect_left(self.starts, g_lo)
            self.starts.insert(i, g_lo)
            self.records.insert(i, _Record(g_lo, g_hi, None, [index]))

    def write(self, index: int, lo: int, hi: int, deps: set[int]) -> None:
        first, last = self._span(lo, hi)
        for rec in self.records[first:last]:
            if rec.writer is not None:
                deps.add(rec.writer)
            deps.update(rec.readers)
        self.starts[first:last] = [lo]
        self.records[first:last] = [_Record(lo, hi, index)]


class DependencyTracker:
    def __init__(self, space_of):
        """``space_of(operand) -> key | None``: the address space an operand lives in (None: untracked)."""
        self.space_of = space_of
        self.spaces: dict = {}

    def deps_for(self, index: int, reads: list[Operand], writes: list[Operand]) -> tuple[int, ...]:
        deps: set[int] = set()
        for op in reads:
            key = self.space_of(op)
            if key is not None and op.size:
                self.spaces.setdefault(key, _IntervalMap()).read(index, *op.extent(), deps)
        for op in writes:
            key = self.space_of(op)
            if key is not None and op.size:
                self.spaces.setdefault(key, _IntervalMap()).write(index, *op.extent(), deps)
        deps.discard(index)
        return tuple(sorted(deps))


class Emitter:
    """Collects instructions, filling in deps from the tracker and DMA channels round-robin."""

    def __init__(self, space_of, dma_channels: int):
        self.instructions: list[Instruction] = []
        self.tracker = DependencyTracker(space_of)
        self.dma_channels = max(1, int(dma_channels))
        self._next_channel = 0

    def emit(self, instr: Instruction) -> int:
        index = len(self.instructions)
        ops = instr.operands()
        writes = instr.writes()
        reads = [op for name, op in ops.items() if name not in writes]
        deps = self.tracker.deps_for(index, reads, list(writes.values()))
        changes: dict = {"deps": deps}
        if instr.unit == "dma":
            changes["channel"] = self._next_channel
            self._next_channel = (self._next_channel + 1) % self.dma_channels
        self.instructions.append(dataclasses.replace(instr, **changes))
        return index
