"""Tile: split each NPU step along output rows (with the input halo) and output channels.

A tile's working set is every streamed input stripe, the weight/bias slice it needs, any constant
operand and the streamed output stripe. Inputs and outputs kept resident in SRAM by the memory
planner are read/written in place and cost the tile nothing. With ``nbuf`` > 1 consecutive tiles
alternate between buffer slots so the DMA of tile i+1 overlaps the compute of tile i (and cores
work on different slots at the same time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..npu.isa import DTYPES
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
        if kind in ("fully_connected", "matmul", "transpose"):
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
               budget: int, cores: int, double_buffer: bool, dtype_sizes: list[int]) -> TilePlan:
    """Pick the largest tiles that fit ``budget`` bytes, then split for cores and double buffering."""
    geo = Geometry(step, in_shapes, out_shape)
    oh, _, oc = out_shape
    rows_c = _candidates(oh, geo.row_step) if geo.row_tiling else [oh]
    chans_c = _candidates(oc, geo.chan_step) if geo.chan_tiling else [oc]

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
    if step.kind == "transpose":
        return ins, fmap_shape(tensor_shape(step.output))
    out = fmap_shape(tensor_shape(step.output))
    if "out_c0" in step.params:          # writes a channel slice of a concat's buffer
        out = (out[0], out[1], step.params["channels"])
    return ins, out
