"""Schedule: explicit dependencies between instructions and the assignment of DMA channels.

The emulator starts an instruction as soon as its engine is free and its ``deps`` are done, and
faults on any hazard the deps do not cover. So every emitted instruction gets a dependency on the
last writer of each byte range it reads (RAW), and on the last writer and every reader since of
each range it writes (WAW, WAR: the reuse of an SRAM slot waits for its last reader). Ranges are
the operands' byte extents, tracked per address space (SRAM, and each DRAM tensor separately so
the lists stay short); the read-only constants image needs no tracking.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..npu.isa import Instruction, Operand


@dataclass
class _Record:
    lo: int
    hi: int
    writer: int | None
    readers: list[int] = field(default_factory=list)


class DependencyTracker:
    def __init__(self, space_of):
        """``space_of(operand) -> key | None``: the address space an operand lives in (None: untracked)."""
        self.space_of = space_of
        self.records: dict[str, list[_Record]] = {}

    def deps_for(self, index: int, reads: list[Operand], writes: list[Operand]) -> tuple[int, ...]:
        deps: set[int] = set()
        for op in reads:
            key = self.space_of(op)
            if key is None:
                continue
            lo, hi = op.extent()
            for rec in self.records.get(key, ()):
                if rec.lo < hi and lo < rec.hi and rec.writer is not None:
                    deps.add(rec.writer)
        for op in writes:
            key = self.space_of(op)
            if key is None:
                continue
            lo, hi = op.extent()
            for rec in self.records.get(key, ()):
                if rec.lo < hi and lo < rec.hi:
                    if rec.writer is not None:
                        deps.add(rec.writer)
                    deps.update(rec.readers)
        deps.discard(index)
        self._record(index, reads, writes)
        return tuple(sorted(deps))

    def _record(self, index: int, reads: list[Operand], writes: list[Operand]) -> None:
        for op in writes:
            key = self.space_of(op)
            if key is None:
                continue
            lo, hi = op.extent()
            recs = self.records.setdefault(key, [])
            # a write that covers a record supersedes it: later accesses only need to wait for us
            recs[:] = [r for r in recs if not (lo <= r.lo and r.hi <= hi)]
            recs.append(_Record(lo, hi, index))
        for op in reads:
            key = self.space_of(op)
            if key is None:
                continue
            lo, hi = op.extent()
            recs = self.records.setdefault(key, [])
            covered = False
            for rec in recs:
                if rec.lo < hi and lo < rec.hi:
                    if not rec.readers or rec.readers[-1] != index:
                        rec.readers.append(index)
                    covered = covered or (rec.lo <= lo and hi <= rec.hi)
            if not covered:
                recs.append(_Record(lo, hi, None, [index]))


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
