"""Tile: split each NPU step along output rows (with the input halo) and output channels.

A tile's working set is every streamed input stripe, the weight/bias slice it needs, any constant
operand and the streamed output stripe. Inputs and outputs kept resident in SRAM by the memory
planner are read/written in place and cost the tile nothing. With ``nbuf`` > 1 consecutive tiles
alternate between buffer slots so the DMA of tile i+1 overlaps the compute of tile i (and cores
work on different slots at the same time). On a block-model target a layer's output channels are
also cut into weight slices (:func:`weight_slice`, as Vela streams weights), so the weights of
one slice load while the MAC array works on the one before.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ..npu import blocks as block_model
from ..npu.isa import DTYPES
from ..targets.model import Target
from .legalize import Step, fmap_shape

ALIGN = 16


def align(n: int, a: int = ALIGN) -> int:
    return (int(n) + a - 1) // a * a


def itemsize(dtype: str) -> int:
    return int(np.dtype(DTYPES[dtype]).itemsize)


@dataclass(frozen=True)
class Region:
    """Rows [y0, y1) x channels [c0, c1) of a (H, W, C) feature map, plus the tile's own padding."""

    rows: tuple[int, int]
    chans: tuple[int, int]
    pad_top: int = 0
    pad_bottom: int = 0

    def shape(self, width: int) -> tuple[int, int, int]:
        return (self.rows[1] - self.rows[0], width, self.chans[1] - self.chans[0])


@dataclass(frozen=True)
class Tile:
    rows: tuple[int, int]       # output rows
    chans: tuple[int, int]      # output channels (the step's own numbering)
    block: int                  # weight block (channel block) index
    core: int


@dataclass
class TilePlan:
    tiles: list[Tile]
    th: int
    tc: int
    nbuf: int                   # slots per streamed operand
    wbuf: int                   # weight slots
    scratch_bytes: int
    layout: dict[tuple, tuple[int, int]] = field(default_factory=dict)   # buffer key -> (offset, bytes)
    streamed_inputs: tuple[bool, ...] = ()
    streamed_output: bool = False


class NoFit(Exception):
    """The smallest tile does not fit: carries the bytes it needs."""

    def __init__(self, needed: int):
        super().__init__(needed)
        self.needed = needed


class Geometry:
    """Maps an output tile of a step to the input regions it reads (halo, channel slices)."""

    def __init__(self, step: Step, in_shapes: list[tuple[int, int, int]], out_shape: tuple[int, int, int]):
        self.step = step
        self.in_shapes = in_shapes
        self.out_shape = out_shape
        p = step.params
        kind = step.kind
        # a resize to a given size maps rows non-linearly (and bilinear reads two): it keeps every row;
        # a softmax normalises whole channel rows: it never splits channels
        sized = kind == "resize" and bool(p.get("size"))
        self.row_tiling = kind in ("conv2d", "depthwise_conv2d", "pool", "elementwise", "lut", "rescale",
                                   "resize", "softmax") and not p.get("global") and not sized
        self.chan_tiling = kind in ("conv2d", "depthwise_conv2d", "pool", "elementwise", "lut", "rescale",
                                    "resize", "fully_connected")
        self.row_step = p["scale"][0] if kind == "resize" and not sized else 1
        # a grouped conv tiles output channels in whole groups (each reads only its inputs)
        self.groups = int(p.get("groups", 1)) if kind == "conv2d" else 1
        self.chan_step = out_shape[2] // self.groups if self.groups > 1 else 1

    def input_region(self, i: int, rows: tuple[int, int], chans: tuple[int, int]) -> Region:
        step, p = self.step, self.step.params
        h, _, c = self.in_shapes[i]
        kind = step.kind
        if kind in ("conv2d", "depthwise_conv2d") or (kind == "pool" and not p.get("global")):
            kh = p["kernel"][0]
            sy = p["stride"][0]
            dy = p.get("dilation", (1, 1))[0]
            pt = p["padding"][0]
            start = rows[0] * sy - pt
            end = (rows[1] - 1) * sy - pt + (kh - 1) * dy + 1
            if rows == (0, self.out_shape[0]) and end < h and (h - 1 - start - (kh - 1) * dy) // sy + 1 == rows[1]:
                end = h    # the whole output reads the whole input (rows past the last window unused)
            y0, y1 = max(0, start), min(h, end)
            if kind != "conv2d":      # depthwise conv and pooling: channel c reads channel c
                in_chans = chans
            elif self.groups > 1:     # whole groups of output channels read their groups' inputs
                cig = c // self.groups
                in_chans = (chans[0] // self.chan_step * cig, -(-chans[1] // self.chan_step) * cig)
            else:
                in_chans = (0, c)
            return Region((y0, y1), in_chans, y0 - start, end - y1)
        if kind == "pool":       # global
            return Region((0, h), chans)
        if kind == "resize":
            if p.get("size"):
                return Region((0, h), chans)
            sy = p["scale"][0]
            return Region((rows[0] // sy, -(-rows[1] // sy)), chans)
        if kind in ("fully_connected", "matmul", "transpose", "pad"):
            return Region((0, h), (0, c))
        if kind == "elementwise" and i == 1 and p.get("b_mode") != "full":
            return Region((0, h), chans if p["b_mode"] == "channel" else (0, c))   # broadcast operand
        return Region(rows, chans)

    def weight_bytes(self, tc: int) -> int:
        """Weights of ``tc`` output channels (every layout keeps Cout last) plus their int32 bias."""
        w = self.step.consts.get("weights")
        if w is None:
            return 0
        return int(np.prod(w.shape[:-1])) * tc


def _candidates(total: int, step: int = 1) -> list[int]:
    """Distinct tile sizes ceil(total / k), largest first (multiples of ``step``)."""
    units = -(-total // step)
    out = sorted({-(-units // k) * step for k in range(1, units + 1)}, reverse=True)
    return out


def make_tiles(out_shape, th: int, tc: int, cores: int) -> list[Tile]:
    oh, _, oc = out_shape
    tiles: list[Tile] = []
    for block, c0 in enumerate(range(0, oc, tc)):
        for y0 in range(0, oh, th):
            tiles.append(Tile((y0, min(oh, y0 + th)), (c0, min(oc, c0 + tc)), block, len(tiles) % cores))
    return tiles


def working_set(geo: Geometry, th: int, tc: int, nbuf: int, wbuf: int, streamed_in, streamed_out,
                dtype_sizes) -> tuple[int, dict]:
    """Bytes of scratch a (th, tc) tiling needs and the offset of every buffer slot in it."""
    layout: dict[tuple, tuple[int, int]] = {}
    cursor = 0

    def put(key, nbytes):
        nonlocal cursor
        layout[key] = (cursor, nbytes)
        cursor += align(nbytes)

    oh, ow, oc = geo.out_shape
    rows = (0, min(th, oh))
    chans = (0, min(tc, oc))
    for i, streamed in enumerate(streamed_in):
        if not streamed:
            continue
        # the largest region any tile needs (interior tiles carry the full halo)
        y_mid = (oh // 2 // max(th, 1)) * th
        worst = max((geo.input_region(i, r, chans) for r in (rows, (y_mid, min(oh, y_mid + th)))),
                    key=lambda reg: reg.rows[1] - reg.rows[0])
        h, w, c = worst.shape(geo.in_shapes[i][1])
        for k in range(nbuf):
            put(("in", i, k), h * w * c * dtype_sizes[i])
    wbytes = geo.weight_bytes(min(tc, oc))
    if wbytes:
        for k in range(wbuf):
            put(("w", k), wbytes)
            put(("bias", k), 4 * min(tc, oc))
    if "b" in geo.step.consts:
        put(("b",), geo.step.consts["b"].nbytes)
    if streamed_out:
        for k in range(nbuf):
            put(("out", k), (rows[1] - rows[0]) * ow * (chans[1] - chans[0]) * dtype_sizes[-1])
    return cursor, layout


def plan_tiles(step: Step, in_shapes, out_shape, streamed_in: list[bool], streamed_out: bool,
               budget: int, cores: int, double_buffer: bool, dtype_sizes: list[int],
               max_chans: int | None = None) -> TilePlan:
    """Pick the largest tiles that fit ``budget`` bytes (at most ``max_chans`` output channels:
    the weight slice), then split for cores and double buffering."""
    geo = Geometry(step, in_shapes, out_shape)
    oh, _, oc = out_shape
    rows_c = _candidates(oh, geo.row_step) if geo.row_tiling else [oh]
    chans_c = _candidates(oc, geo.chan_step) if geo.chan_tiling else [oc]
    if max_chans is not None and geo.chan_tiling and geo.chan_step == 1 and max_chans < oc:
        chans_c = sorted({c for c in chans_c if c <= max_chans} | {max_chans}, reverse=True)

    def fits(th, tc, nbuf, wbuf):
        need, layout = working_set(geo, th, tc, nbuf, wbuf, streamed_in, streamed_out, dtype_sizes)
        return need <= budget, need, layout

    chosen = None
    for tc in chans_c:
        for th in rows_c:
            if fits(th, tc, 1, 1)[0]:
                chosen = (th, tc)
                break
        if chosen:
            break
    if chosen is None:
        raise NoFit(fits(rows_c[-1], chans_c[-1], 1, 1)[1])
    th, tc = chosen
    streamed = any(streamed_in) or streamed_out
    want_tiles = cores * (2 if (double_buffer and streamed) else 1)
    ntiles = -(-oh // th) * -(-oc // tc)
    if ntiles < want_tiles and geo.row_tiling and oh > 1:
        per = max(1, want_tiles // max(1, -(-oc // tc)))
        th = min(th, max(geo.row_step, -(-oh // per // geo.row_step) * geo.row_step))
        ntiles = -(-oh // th) * -(-oc // tc)
    if ntiles < cores and geo.chan_tiling and oc >= 2 * cores:
        per_core = -(-oc // cores)
        tc = min(tc, -(-per_core // geo.chan_step) * geo.chan_step)
    nblocks = -(-oc // tc)
    tiles = make_tiles(out_shape, th, tc, cores)
    prefs = [cores * 2, cores, 2, 1] if double_buffer else [cores, 1]
    for nbuf in sorted({min(n, len(tiles)) for n in prefs}, reverse=True):
        wbuf = min(nblocks, nbuf)
        ok, need, layout = fits(th, tc, nbuf, wbuf)
        if ok:
            return TilePlan(tiles, th, tc, nbuf, wbuf, need, layout, tuple(streamed_in), streamed_out)
    ok, need, layout = fits(th, tc, 1, 1)
    return TilePlan(tiles, th, tc, 1, 1, need, layout, tuple(streamed_in), streamed_out)


def step_shapes(step: Step, tensor_shape) -> tuple[list[tuple[int, int, int]], tuple[int, int, int]]:
    """(rows, width, channels) views of a step's inputs and output."""
    ins = [fmap_shape(tensor_shape(n)) for n in step.inputs]
    if step.kind in ("transpose", "pad"):
        return ins, fmap_shape(tensor_shape(step.output))
    out = fmap_shape(tensor_shape(step.output))
    if "out_c0" in step.params:          # writes a channel slice of a concat's buffer
        out = (out[0], out[1], step.params["channels"])
    return ins, out


_BLOCK_KINDS = {"conv2d": "conv", "depthwise_conv2d": "depthwise", "fully_connected": "vector"}


def step_block_op(step: Step, in_shapes, out_shape, dtype_sizes) -> block_model.BlockOp | None:
    """A MAC step as the block model sees it (None for steps without weights)."""
    kind = _BLOCK_KINDS.get(step.kind)
    if kind is None or "weights" not in step.consts or step.params.get("groups", 1) > 1:
        return None
    p = step.params
    ifm, ofm = tuple(in_shapes[0]), tuple(out_shape)
    if kind == "vector":             # (M, 1, K) rows -> the (1, M, K) row of pixels FC runs as
        ifm, ofm = (1, ifm[0] * ifm[1], ifm[2]), (1, ofm[0] * ofm[1], ofm[2])
    return block_model.BlockOp(kind, ifm, ofm, kernel=tuple(p.get("kernel", (1, 1))),
                               stride=tuple(p.get("stride", (1, 1))), dilation=tuple(p.get("dilation", (1, 1))),
                               ifm_bits=8 * dtype_sizes[0], ofm_bits=8 * dtype_sizes[-1], bias=True)


def weight_slice(step: Step, in_shapes, out_shape, dtype_sizes, target: Target | None) -> int | None:
    """Output channels per weight DMA on a block-model target (None: as many as fit).

    Vela streams a layer's weights from flash in depth slices, double buffered, so the MAC array
    works on one slice while the next arrives (``ProposeSlicedWeightBuffering``). Of the slice
    depths it uses (multiples of 16 up to the OFM block depth, or the whole layer) the tiler times
    each as a two-stage pipeline -- loads back to back, a slice computing once it is loaded and its
    predecessor is done, the last slice holding what remains (a slice re-reads the whole IFM, so
    thin slices of a wide layer lose) -- and takes the thinnest within 2 % of the fastest, since
    every double-buffered slice costs SRAM."""
    if target is None or target.blocks is None:
        return None
    op = step_block_op(step, in_shapes, out_shape, dtype_sizes)
    if op is None:
        return None
    blocks = target.blocks
    channels = op.ofm[2]
    block_depth = block_model.block_config(blocks, target.mac.ofm_lanes, target.mac.ifm_lanes, op).ofm[2]
    load_per_channel = (step.consts["weights"].nbytes / channels + block_model.BIAS_BYTES_PER_CHANNEL) \
        / target.dram_bytes_per_cycle

    def slice_cycles(depth: int) -> tuple[float, float]:
        """(compute, load) of one slice of ``depth`` output channels."""
        sliced = dataclasses.replace(op, ofm=(*op.ofm[:2], depth))
        compute = block_model.op_cycles(
            blocks, target.mac.ofm_lanes, target.mac.ifm_lanes, sliced,
            sram_latency=target.sram_latency_cycles, sram_bytes_per_cycle=target.sram_bytes_per_cycle,
            sram_burst=target.sram_burst_bytes, weight_latency=target.dram_latency_cycles)
        per_slice = max(compute.continuing(), math.ceil(block_model.sram_bytes(
            sliced, compute.config, int(load_per_channel * depth), target.sram_burst_bytes)
            / target.sram_bytes_per_cycle))
        return per_slice, target.dram_latency_cycles + load_per_channel * depth

    times = {}
    for depth in sorted({*range(block_model.OFM_SPLIT_DEPTH, min(block_depth, channels) + 1,
                                block_model.OFM_SPLIT_DEPTH), channels}):
        # the two-stage pipeline: loads back to back, each slice computes once loaded and once the
        # one before it is done (the last slice holds the remaining channels)
        loaded = done = 0.0
        for start in range(0, channels, depth):
            compute, load = slice_cycles(min(depth, channels - start))
            loaded += load
            done = max(done, loaded) + compute
        times[depth] = done
    # the thinnest slice within 2 % of the fastest: double-buffered slices cost SRAM
    fastest = min(times.values())
    best = min(depth for depth, time in times.items() if time <= fastest * 1.02)
    return None if best == channels else best
