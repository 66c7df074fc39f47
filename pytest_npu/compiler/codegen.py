"""Emit: walk the legalised steps tile by tile and write the NPU Program.

Memory map: DRAM holds the graph inputs and outputs (SRAM does, on a target with ``io_memory =
"sram"``), tensors spilled by the SRAM planner and the tensors host fallback ops exchange, then
the constants image (every weight block, bias and
constant operand, stored in the order and slicing the tiles read them, so each load is one
contiguous DMA). SRAM holds resident tensors and each step's scratch slots at the offsets the
planner chose. A weight DMA carries the size of the encoded streams on a target that compresses
weights (``compiler/weights.py``). Instructions get their deps and DMA channels from :class:`schedule.Emitter`;
tiles go to cores round-robin (``Tile.core``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from ..errors import CompileError
from ..ir.graph import Graph
from ..npu.blocks import block_config
from ..npu.isa import (
    Conv2D,
    DepthwiseConv2D,
    DmaIn,
    DmaOut,
    Elementwise,
    FullyConnected,
    HostOp,
    Lut,
    MatMul,
    Operand,
    Pool,
    Rescale,
    Resize,
    Softmax,
)
from ..npu.program import Program, TensorInfo
from ..targets.model import Target
from .legalize import Legalized, Step, fmap_shape, sample_shape
from .memory import MemoryPlan
from .schedule import Emitter
from .tiling import Geometry, Region, Tile, TilePlan, align, itemsize, step_block_op, step_shapes
from .weights import scale_stream_bytes, weight_stream_bytes

DRAM_ALIGN = 64


@dataclass(frozen=True)
class Loc:
    """Where a whole tensor lives: memory, byte offset, (rows, width, channels) view and dtype."""

    mem: str
    offset: int
    fshape: tuple[int, int, int]
    dtype: str

    def region(self, rows: tuple[int, int], chans: tuple[int, int], name: str = "") -> Operand:
        h, w, c = self.fshape
        isz = itemsize(self.dtype)
        off = self.offset + (rows[0] * w * c + chans[0]) * isz
        nch = chans[1] - chans[0]
        strides = None if nch == c else (w * c * isz, c * isz, isz)
        return Operand(self.mem, off, (rows[1] - rows[0], w, nch), self.dtype, strides, name)


def _as_2d(op: Operand) -> Operand:
    """(M, 1, K) feature-map view -> the (M, K) operand FC/MATMUL take."""
    rows, width, chans = op.shape
    assert width == 1 or op.strides is None
    strides = None if op.strides is None else (op.strides[0], op.strides[2])
    return Operand(op.mem, op.offset, (rows * width, chans), op.dtype, strides, op.name)


class _Constants:
    """The constants image: arrays appended at aligned offsets, addressed from ``base`` in DRAM."""

    def __init__(self, base: int):
        self.base = base
        self.chunks: list[bytes] = []
        self.size = 0
        self.infos: dict[str, TensorInfo] = {}

    def add(self, name: str, array: np.ndarray, dtype: str) -> Operand:
        data = np.ascontiguousarray(array.astype(dtype)).tobytes()
        pad = align(self.size, 16) - self.size
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        offset = self.base + self.size
        self.chunks.append(data)
        self.size += len(data)
        shape = tuple(int(d) for d in array.shape)
        self.infos[name] = TensorInfo(name, "dram", offset, shape, dtype, "constant")
        return Operand("dram", offset, shape, dtype, None, name)

    def image(self) -> bytes:
        return b"".join(self.chunks)


class CodeGen:
    def __init__(self, graph: Graph, legal: Legalized, plan: MemoryPlan, target: Target, cores: int,
                 metadata: dict):
        self.graph = graph
        self.legal = legal
        self.plan = plan
        self.target = target
        self.cores = cores
        self.metadata = metadata
        self.locs: dict[str, Loc] = {}
        self.tensor_infos: dict[str, TensorInfo] = {}
        self._weights: dict[int, list | None] = {}           # step -> its weight blocks (None: no weights)
        self._preloaded: dict[int, dict[int, int]] = {}      # step -> {slot: block} loaded ahead

    # ---- memory map ---------------------------------------------------------------------------
    def root(self, name: str) -> str:
        while name in self.legal.aliases:
            name = self.legal.aliases[name]
        return name

    def _layout(self) -> int:
        """Place DRAM tensors and record SRAM-resident ones; returns where the constants start."""
        cursor = 0
        io = set(self.graph.inputs) | set(self.graph.outputs)
        for root, home in sorted(self.plan.homes.items(), key=lambda kv: (kv[0] not in io, kv[0])):
            t = self.graph.tensors[root]
            fshape = fmap_shape(tuple(t.shape))
            kind = "input" if root in self.graph.inputs else "output" if root in self.graph.outputs \
                else "intermediate"
            if home == "sram":      # resident tensors, and graph I/O on a target that keeps it in SRAM
                self.locs[root] = Loc("sram", self.plan.sram_offsets[root], fshape, t.dtype)
                self.tensor_infos[root] = TensorInfo(root, "sram", self.plan.sram_offsets[root],
                                                     sample_shape(tuple(t.shape)), t.dtype, kind)
                continue
            cursor = align(cursor, DRAM_ALIGN)
            self.locs[root] = Loc("dram", cursor, fshape, t.dtype)
            self.tensor_infos[root] = TensorInfo(root, "dram", cursor, sample_shape(tuple(t.shape)),
                                                 t.dtype, kind)
            cursor += int(np.prod(sample_shape(tuple(t.shape)), dtype=np.int64)) * itemsize(t.dtype)
        for name in list(self.graph.inputs) + list(self.graph.outputs):
            root = self.root(name)
            if name != root:
                loc = self.locs[root]
                t = self.graph.tensors[name]
                kind = "input" if name in self.graph.inputs else "output"
                self.tensor_infos[name] = TensorInfo(name, loc.mem, loc.offset, sample_shape(tuple(t.shape)),
                                                     t.dtype, kind)
        self._dram_starts = sorted(loc.offset for loc in self.locs.values() if loc.mem == "dram")
        return align(cursor, DRAM_ALIGN)

    def loc(self, name: str) -> Loc:
        """Where tensor ``name`` lives, viewed with its own shape (aliases share their root's bytes)."""
        root = self.locs[self.root(name)]
        t = self.graph.tensors[name]
        return Loc(root.mem, root.offset, fmap_shape(tuple(t.shape)), t.dtype)

    def _space(self, op: Operand):
        if op.mem == "sram":
            return "sram"
        if op.offset >= self.consts.base:
            return None                       # read-only constants image
        i = bisect.bisect_right(self._dram_starts, op.offset) - 1
        return ("dram", self._dram_starts[max(i, 0)])

    # ---- driver -------------------------------------------------------------------------------
    def build(self) -> Program:
        self.consts = _Constants(self._layout())
        self.out = Emitter(self._space, self.target.dma_channels)
        for index, step in enumerate(self.legal.steps):
            if step.where == "host":
                self._host(step)
            elif step.kind == "transpose":
                self._transpose(step, index)
            elif step.kind == "pad":
                self._pad(step, index)
            else:
                self._tiled(step, index)
        constants = self.consts.image()
        dram_needed = self.consts.base + len(constants)
        if dram_needed > self.target.dram_bytes:
            raise CompileError(f"{self.graph.source or self.graph.name}: the program needs {dram_needed} bytes "
                               f"of DRAM, {self.target.name} has {self.target.dram_bytes}; use a target "
                               "with more DRAM or a smaller model")
        tensors = dict(self.tensor_infos)
        tensors.update(self.consts.infos)
        return Program(instructions=self.out.instructions, tensors=tensors, constants=constants,
                       constants_offset=self.consts.base, inputs=list(self.graph.inputs),
                       outputs=list(self.graph.outputs), target=self.target.name,
                       target_hash=self.target.content_hash(), metadata=self.metadata)

    # ---- host and copies ----------------------------------------------------------------------
    def _dram_operand(self, name: str, per_sample: bool = False) -> Operand:
        t = self.graph.tensors[name]
        if t.is_constant:       # constants keep their full IR shape (a 1x1 kernel is not a batch) ...
            shape = sample_shape(tuple(t.shape)) if per_sample else tuple(t.shape)
            key = f"const:{name}" + ("/sample" if per_sample else "")   # ... unless used as an activation
            if key not in self.consts.infos:
                self.consts.add(key, np.asarray(t.data).reshape(shape), t.dtype)
            return self.consts.infos[key].operand()
        loc = self.locs[self.root(name)]
        if loc.mem != "dram":    # pragma: no cover - the planner forces host operands to DRAM
            raise CompileError(f"tensor '{name}' of a host op is not in DRAM")
        return Operand("dram", loc.offset, sample_shape(tuple(t.shape)), t.dtype, None, name)

    def _host(self, step: Step) -> None:
        views = step.params.get("views", {})

        def operands(names, perms):
            out = []
            for name, perm in zip(names, perms or [None] * len(names)):
                op = self._dram_operand(name, step.params.get("consts_per_sample", False))
                if perm:     # the host sees the tensor transposed (ONNX layout): permuted strides
                    strides = op.byte_strides()
                    op = Operand(op.mem, op.offset, tuple(op.shape[p] for p in perm), op.dtype,
                                 tuple(strides[p] for p in perm), op.name)
                out.append(op)
            return tuple(out)

        self.out.emit(HostOp(op=step.op, inputs=operands(step.inputs, views.get("in")),
                             outputs=operands(step.outputs, views.get("out")),
                             attrs=step.params["attrs"], reason=step.reason, layer=step.name))

    def _transpose(self, step: Step, index: int) -> None:
        if step.params.get("npu_copy"):
            self._transpose_on_npu(step, index)
            return
        src_t = self.graph.tensors[step.inputs[0]]
        in_shape = sample_shape(tuple(src_t.shape))
        perm = step.params["perm"]
        src_full = self._dram_operand(step.inputs[0])
        strides = src_full.byte_strides()
        src = Operand("dram", src_full.offset, tuple(in_shape[p] for p in perm), src_t.dtype,
                      tuple(strides[p] for p in perm), step.inputs[0])
        out_loc = self.locs[self.root(step.output)]
        if out_loc.mem == "sram":
            self.out.emit(DmaIn(src=src, dst=Operand("sram", out_loc.offset, src.shape, src.dtype,
                                                      None, step.output), layer=step.name))
            return
        off, _ = self.plan.tiles[index].layout[("out", 0)]
        tmp = Operand("sram", self.plan.scratch[index] + off, src.shape, src.dtype, None, step.output)
        self.out.emit(DmaIn(src=src, dst=tmp, layer=step.name))
        self.out.emit(DmaOut(src=tmp, dst=Operand("dram", out_loc.offset, src.shape, src.dtype, None,
                                                  step.output), layer=step.name))

    def _whole_in_sram(self, step: Step, index: int) -> tuple[Operand, Operand]:
        """A step planned whole (``MemoryPlan._whole``): its input and output as SRAM operands --
        the input DMA'd into scratch when it lives in DRAM, the output in scratch when it does
        (:meth:`_whole_out` DMAs it there)."""
        name = step.inputs[0]
        t = self.graph.tensors[name]
        loc = self.locs[self.root(name)]
        in_shape = sample_shape(tuple(t.shape))
        if loc.mem == "sram":
            src = Operand("sram", loc.offset, in_shape, t.dtype, None, name)
        else:
            src = self._scratch(index, ("in", 0, 0), in_shape, t.dtype, name)
            self.out.emit(DmaIn(src=self._dram_operand(name), dst=src, layer=step.name))
        out_t = self.graph.tensors[step.output]
        out_shape = sample_shape(tuple(out_t.shape))
        out_loc = self.locs[self.root(step.output)]
        if out_loc.mem == "sram":
            dst = Operand("sram", out_loc.offset, out_shape, out_t.dtype, None, step.output)
        else:
            off, _ = self.plan.tiles[index].layout[("out", 0)]
            dst = Operand("sram", self.plan.scratch[index] + off, out_shape, out_t.dtype, None, step.output)
        return src, dst

    def _whole_out(self, step: Step, dst: Operand) -> None:
        out_loc = self.locs[self.root(step.output)]
        if out_loc.mem != "sram":
            self.out.emit(DmaOut(src=dst, dst=Operand("dram", out_loc.offset, dst.shape, dst.dtype, None,
                                                      step.output), layer=step.name))

    def _transpose_on_npu(self, step: Step, index: int) -> None:
        """The whole input in SRAM, read by an identity RESCALE through permuted strides into the
        output."""
        src, dst = self._whole_in_sram(step, index)
        perm = step.params["perm"]
        strides = src.byte_strides()
        view = Operand("sram", src.offset, tuple(src.shape[p] for p in perm), src.dtype,
                       tuple(strides[p] for p in perm), src.name)
        dst = Operand(dst.mem, dst.offset, view.shape, dst.dtype, None, dst.name)
        self.out.emit(Rescale(ifm=view, ofm=dst, ifm_zp=step.params["ifm_zp"], requant=step.params["requant"],
                              layer=step.name))
        self._whole_out(step, dst)

    def _pad(self, step: Step, index: int) -> None:
        """RESCALEs with multiplier 0 write the pad value over each border slab of the output (their
        input a zero-stride view of one input element), then an identity RESCALE copies the input
        into the interior through the output's strides."""
        src, dst = self._whole_in_sram(step, index)
        pads = step.params["pads"]
        strides = dst.byte_strides()
        inner = [(lo, lo + n) for (lo, _), n in zip(pads, src.shape)]
        for axis, (lo, _) in enumerate(pads):
            for start, stop in ((0, lo), (inner[axis][1], dst.shape[axis])):
                if stop <= start:
                    continue
                # the slab: this axis's border rows, the earlier axes' interior (their borders are done)
                ranges = [inner[a] if a < axis else (0, dst.shape[a]) for a in range(len(pads))]
                ranges[axis] = (start, stop)
                shape = tuple(b - a for a, b in ranges)
                offset = dst.offset + sum(a * st for (a, _), st in zip(ranges, strides))
                slab = Operand("sram", offset, shape, dst.dtype, strides, dst.name)
                zeros = Operand("sram", src.offset, shape, src.dtype, (0,) * len(shape), src.name)
                self.out.emit(Rescale(ifm=zeros, ofm=slab, ifm_zp=step.params["ifm_zp"],
                                      requant=step.params["fill"], layer=step.name))
        offset = dst.offset + sum(lo * st for (lo, _), st in zip(pads, strides))
        interior = Operand("sram", offset, src.shape, dst.dtype, strides, dst.name)
        self.out.emit(Rescale(ifm=src, ofm=interior, ifm_zp=step.params["ifm_zp"],
                              requant=step.params["requant"], layer=step.name))
        self._whole_out(step, dst)

    # ---- tiled NPU steps ----------------------------------------------------------------------
    def _scratch(self, index: int, key: tuple, shape, dtype: str, name: str) -> Operand:
        off, _ = self.plan.tiles[index].layout[key]
        return Operand("sram", self.plan.scratch[index] + off, tuple(shape), dtype, None, name)

    def _step_weights(self, index: int):
        """The weight blocks of NPU step ``index`` (None when it has none), added to the constants
        image once."""
        if index not in self._weights:
            step = self.legal.steps[index]
            blocks = None
            if step.where == "npu" and index in self.plan.tiles and "weights" in step.consts:
                ins, out_shape = step_shapes(step, lambda n: tuple(self.graph.tensors[n].shape))
                blocks = self._weight_blocks(step, self.plan.tiles[index], ins, out_shape)
            self._weights[index] = blocks
        return self._weights[index]

    def _load_weights(self, index: int, block: int, wslot: int) -> tuple[Operand, Operand]:
        """DMA weight block ``block`` of step ``index`` (weights, then scale/bias) into slot ``wslot``."""
        step = self.legal.steps[index]
        (w_src, w_encoded), (b_src, b_encoded) = self._step_weights(index)[block]
        weights = self._scratch(index, ("w", wslot), w_src.shape, "int8", w_src.name)
        bias = self._scratch(index, ("bias", wslot), b_src.shape, "int32", b_src.name)
        self.out.emit(DmaIn(src=w_src, dst=weights, layer=step.name, encoded_bytes=w_encoded))
        self.out.emit(DmaIn(src=b_src, dst=bias, layer=step.name, encoded_bytes=b_encoded))
        return weights, bias

    def _prefetch_next(self, index: int) -> None:
        """Queue the next step's first weight block now, so the DMA loads it while this step
        computes (Vela prebuffers the next operation's weights the same way); its scratch is live
        from this step on when the memory plan allows it (``MemoryPlan.prefetch``)."""
        nxt = index + 1
        if not self.plan.prefetch or nxt >= len(self.legal.steps) or nxt in self._preloaded \
                or self._step_weights(nxt) is None:
            return
        self._load_weights(nxt, 0, 0)
        self._preloaded[nxt] = {0: 0}

    def _tiled(self, step: Step, index: int) -> None:
        tp: TilePlan = self.plan.tiles[index]
        ins, out_shape = step_shapes(step, lambda n: tuple(self.graph.tensors[n].shape))
        geo = Geometry(step, ins, out_shape)
        weight_blocks = self._step_weights(index)
        if weight_blocks is None:
            self._prefetch_next(index)
        b_const = None
        if "b" in step.consts:
            b_src = self.consts.add(f"{step.name}/b", step.consts["b"], step.params["dtype"])
            b_const = self._scratch(index, ("b",), b_src.shape, b_src.dtype, f"{step.name}/b")
            self.out.emit(DmaIn(src=b_src, dst=b_const, layer=step.name))
        preloaded = self._preloaded.pop(index, {})     # weight slot -> block, loaded by the step before
        loaded: dict[int, int] = dict(preloaded)
        preloaded_blocks = set(preloaded.values())
        out_loc = self.loc(step.output)
        out_c0 = step.params.get("out_c0", 0)
        for t, tile in enumerate(tp.tiles):
            slot = t % tp.nbuf
            # Weights first: they depend on nothing computed, so a stripe waiting for the layer
            # before (or for the host) does not hold them up on the in-order DRAM bus.
            weights = bias = None
            last_block_loaded = False
            if weight_blocks is not None:
                wslot = tile.block % tp.wbuf
                (w_src, _), (b_src, _) = weight_blocks[tile.block]
                weights = self._scratch(index, ("w", wslot), w_src.shape, "int8", w_src.name)
                bias = self._scratch(index, ("bias", wslot), b_src.shape, "int32", b_src.name)
                if loaded.get(wslot) != tile.block:
                    self._load_weights(index, tile.block, wslot)
                    loaded[wslot] = tile.block
                    last_block_loaded = tile.block == len(weight_blocks) - 1
            operands, regions = [], []
            for i, name in enumerate(step.inputs):
                reg = geo.input_region(i, tile.rows, tile.chans)
                regions.append(reg)
                loc = self.loc(name)
                src = loc.region(reg.rows, reg.chans, name)
                if loc.mem == "sram":
                    operands.append(src)
                else:
                    dst = self._scratch(index, ("in", i, slot), src.shape, src.dtype, name)
                    self.out.emit(DmaIn(src=src, dst=dst, layer=step.name))
                    operands.append(dst)
            if last_block_loaded or (t == 0 and weight_blocks is not None and len(weight_blocks) - 1 in preloaded_blocks):
                self._prefetch_next(index)     # this step's last weights are queued: the next step's go next
            out_chans = (tile.chans[0] + out_c0, tile.chans[1] + out_c0)
            final = out_loc.region(tile.rows, out_chans, step.output)
            ofm = final if out_loc.mem == "sram" else \
                self._scratch(index, ("out", slot), final.shape, final.dtype, step.output)
            computed = self._compute(step, tile, operands, regions, weights, bias, b_const, ofm)
            for instruction in computed if isinstance(computed, list) else [computed]:
                self.out.emit(instruction)
            if out_loc.mem != "sram":
                self.out.emit(DmaOut(src=ofm, dst=final, layer=step.name))

    def _weight_blocks(self, step: Step, tp: TilePlan, ins, out_shape) -> list[tuple[tuple[Operand, int], tuple[Operand, int]]]:
        """Each output-channel block's weights and bias in the constants image, with the bytes a
        DMA moves for them: the encoded streams on a target that compresses weights, else 0."""
        w, b = step.consts["weights"], step.consts["bias"]
        blocks = []
        for block, c0 in enumerate(range(0, w.shape[-1], tp.tc)):
            c1 = min(w.shape[-1], c0 + tp.tc)
            suffix = f"[{block}]" if tp.tc < w.shape[-1] else ""
            encoded = self._encoded(step, w[..., c0:c1], ins, (*out_shape[:2], c1 - c0))
            blocks.append(((self.consts.add(f"{step.name}/weights{suffix}", w[..., c0:c1], "int8"), encoded[0]),
                           (self.consts.add(f"{step.name}/bias{suffix}", b[c0:c1], "int32"), encoded[1])))
        return blocks

    def _encoded(self, step: Step, weights: np.ndarray, ins, out_shape) -> tuple[int, int]:
        """(weight stream, scale/bias stream) bytes of one weight block; (0, 0) uncompressed."""
        target = self.target
        if target.weight_compression != "ethos-u":
            return 0, 0
        sizes = [itemsize(self.graph.tensors[n].dtype) for n in step.inputs + [step.output]]
        op = step_block_op(step, ins, out_shape, sizes)
        depth, part = target.mac.ofm_lanes, False
        if op is not None and target.blocks is not None:
            cfg = block_config(target.blocks, target.mac.ofm_lanes, target.mac.ifm_lanes, op)
            depth, part = cfg.ofm[2], cfg.part_kernel
        stream = weight_stream_bytes(
            weights, step.params.get("weight_zp", 0), depthwise=step.kind == "depthwise_conv2d", part_kernel=part,
            ofm_block_depth=depth, ifm_bits=8 * sizes[0], ifm_micro_depth=target.mac.ifm_lanes,
            ofm_micro_depth=target.mac.ofm_lanes, dilation=tuple(step.params.get("dilation", (1, 1))))
        return stream, scale_stream_bytes(weights.shape[-1])

    def _compute(self, step: Step, tile: Tile, ops: list[Operand], regions: list[Region],
                 weights, bias, b_const, ofm: Operand):
        p = step.params
        core, layer = tile.core, step.name
        kind = step.kind
        if kind in ("conv2d", "depthwise_conv2d"):
            reg = regions[0]
            padding = (reg.pad_top, reg.pad_bottom, p["padding"][2], p["padding"][3])
            cls = Conv2D if kind == "conv2d" else DepthwiseConv2D
            if p.get("groups", 1) > 1:
                return _grouped_convs(step, tile, ops[0], weights, bias, ofm, padding)
            return cls(ifm=ops[0], weights=weights, bias=bias, ofm=ofm, stride=p["stride"],
                       dilation=p["dilation"], padding=padding, ifm_zp=p["ifm_zp"],
                       weight_zp=p["weight_zp"], requant=_slice_requant(p["requant"], tile.chans), core=core, layer=layer)
        if kind == "fully_connected":
            return FullyConnected(ifm=_as_2d(ops[0]), weights=weights, bias=bias, ofm=_as_2d(ofm),
                                  ifm_zp=p["ifm_zp"], weight_zp=p["weight_zp"],
                                  requant=_slice_requant(p["requant"], tile.chans), core=core, layer=layer)
        if kind == "matmul":
            return MatMul(a=_as_2d(ops[0]), b=_as_2d(ops[1]), ofm=_as_2d(ofm), a_zp=p["a_zp"], b_zp=p["b_zp"],
                          requant=p["requant"], core=core, layer=layer)
        if kind == "pool":
            reg = regions[0]
            if p.get("global"):
                kernel, stride, padding = (ops[0].shape[0], ops[0].shape[1]), (1, 1), (0, 0, 0, 0)
            else:
                kernel, stride = p["kernel"], p["stride"]
                padding = (reg.pad_top, reg.pad_bottom, p["padding"][2], p["padding"][3])
            return Pool(ifm=ops[0], ofm=ofm, kind=p["pool"], kernel=(int(kernel[0]), int(kernel[1])),
                        stride=(int(stride[0]), int(stride[1])), padding=padding, ifm_zp=p["ifm_zp"],
                        requant=p["requant"], core=core, layer=layer, divide=bool(p.get("divide", False)))
        if kind == "elementwise":
            if b_const is not None:
                b = b_const if p["b_mode"] == "scalar" else Operand(
                    "sram", b_const.offset + tile.chans[0] * itemsize(b_const.dtype),
                    (tile.chans[1] - tile.chans[0],), b_const.dtype, None, b_const.name)
            elif p["b_mode"] == "full":
                b = ops[1]
            else:           # a (1, 1, C) / (1, 1, 1) activation broadcast: the (C,) / (1,) operand
                b = Operand(ops[1].mem, ops[1].offset, (ops[1].size,), ops[1].dtype, None, ops[1].name)
            return Elementwise(a=ops[0], b=b, ofm=ofm, op=p["op"], a_zp=p["a_zp"], b_zp=p["b_zp"],
                               a_multiplier=p.get("a_multiplier", 1 << 30), a_shift=p.get("a_shift", 30),
                               b_multiplier=p.get("b_multiplier", 1 << 30), b_shift=p.get("b_shift", 30),
                               requant=p["requant"], core=core, layer=layer,
                               left_shift=p.get("left_shift", 20))
        if kind == "lut":
            return Lut(ifm=ops[0], ofm=ofm, table=p["table"], core=core, layer=layer)
        if kind == "rescale":
            return Rescale(ifm=ops[0], ofm=ofm, ifm_zp=p["ifm_zp"], requant=p["requant"], core=core, layer=layer)
        if kind == "resize":
            return Resize(ifm=ops[0], ofm=ofm, scale=tuple(p["scale"]), core=core, layer=layer,
                          mode=p.get("mode", "nearest"), size=tuple(p.get("size", ())),
                          align_corners=p.get("align_corners", False),
                          half_pixel_centers=p.get("half_pixel_centers", False))
        if kind == "softmax":
            return Softmax(ifm=ops[0], ofm=ofm, exp_table=p["exp_table"], requant=p["requant"], core=core,
                           layer=layer, int16_scaling=tuple(p.get("int16_scaling", ())))
        raise CompileError(f"layer '{step.name}': no code generator for {kind}")  # pragma: no cover


def _channel_slice(op: Operand, c0: int, channels: int) -> Operand:
    """Channels [c0, c0 + channels) of an operand (channels last) as a strided view."""
    return Operand(op.mem, op.offset + c0 * op.byte_strides()[-1], (*op.shape[:-1], channels), op.dtype,
                   op.byte_strides(), op.name)


def _grouped_convs(step: Step, tile: Tile, ifm: Operand, weights: Operand, bias: Operand, ofm: Operand,
                   padding) -> list[Conv2D]:
    """One CONV2D per group of a tile (whole groups): each reads its group's input channels, its
    own (KH, KW, Cin/groups, Cout/groups) weights and writes its output channels -- all views into
    the tile's buffers, so the DMAs stay whole-stripe and contiguous."""
    p = step.params
    cig = step.consts["weights"].shape[2]
    per = step.consts["weights"].shape[3] // p["groups"]
    convs = []
    for k in range((tile.chans[1] - tile.chans[0]) // per):
        first = tile.chans[0] + k * per
        convs.append(Conv2D(
            ifm=_channel_slice(ifm, k * cig, cig), weights=_channel_slice(weights, k * per, per),
            bias=_channel_slice(bias, k * per, per), ofm=_channel_slice(ofm, k * per, per),
            stride=p["stride"], dilation=p["dilation"], padding=padding, ifm_zp=p["ifm_zp"],
            weight_zp=p["weight_zp"], requant=_slice_requant(p["requant"], (first, first + per)),
            core=tile.core, layer=step.name))
    return convs


def _slice_requant(req, chans: tuple[int, int]):
    """The per-channel requant entries of one output-channel block."""
    if req is None or len(req.multiplier) == 1:
        return req
    from dataclasses import replace
    return replace(req, multiplier=req.multiplier[chans[0]:chans[1]], shift=req.shift[chans[0]:chans[1]])
