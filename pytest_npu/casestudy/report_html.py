"""The case study as one self-contained HTML file: tables and inline-SVG charts, no JavaScript.

Charts: per-layer cycles (one group of bars per layer, one bar per target), accuracy against
latency per target (log-scaled latency), and the energy breakdown of every port (stacked bars).
Per-layer tables reuse the history report's :func:`pytest_npu.harness.html.layer_table`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape

from ..harness.html import PALETTE, layer_table
from .table import ENERGY_PARTS, ModelFigures, PortFigures, StepFigures, energy_split

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2.2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.82em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:2px 7px;text-align:right} th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left} .bar{background:#1f77b4;height:.8em;display:inline-block}
.ok{color:#080;font-weight:bold} .bad{color:#c00;font-weight:bold} svg text{font-size:11px;fill:#333}
.note{color:#555;font-size:.9em} pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
"""


def _svg_open(width: int, height: int, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">')


def _legend(names: Sequence[str], colours: dict[str, str], x: float, y: float) -> str:
    items = []
    for i, name in enumerate(names):
        items.append(f'<rect x="{x}" y="{y + 16 * i}" width="11" height="11" fill="{colours[name]}"/>'
                     f'<text x="{x + 16}" y="{y + 16 * i + 10}">{escape(name)}</text>')
    return "".join(items)


def _colours(names: Sequence[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def grouped_bars(title: str, groups: Sequence[tuple[str, dict[str, float]]], unit: str) -> str:
    """Horizontal bars: one group per label, one bar per series (e.g. layer x target cycles)."""
    series = list(dict.fromkeys(name for _, values in groups for name in values))
    colours = _colours(series)
    bar, gap, left, right = 10, 8, 190, 170
    width = 860
    height = 30 + len(groups) * (len(series) * bar + gap) + 24
    top = max((v for _, values in groups for v in values.values()), default=0.0) or 1.0
    plot = width - left - right
    out = [_svg_open(width, height, title), f'<text x="{left}" y="14">{escape(title)} ({escape(unit)})</text>']
    y = 26
    for label, values in groups:
        out.append(f'<text x="{left - 6}" y="{y + len(series) * bar / 2 + 4:.1f}" text-anchor="end">'
                   f'{escape(label[:28])}</text>')
        for name in series:
            value = values.get(name, 0.0)
            w = plot * value / top
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 1}" fill="{colours[name]}">'
                       f'<title>{escape(label)} on {escape(name)}: {value:,.0f} {escape(unit)}</title></rect>')
            y += bar
        y += gap
    out.append(f'<line x1="{left}" x2="{left}" y1="22" y2="{y}" stroke="#999"/>')
    for i in range(1, 5):
        x = left + plot * i / 4
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="22" y2="{y}" stroke="#e6e6e6"/>'
                   f'<text x="{x:.1f}" y="{y + 12}" text-anchor="middle">{top * i / 4:,.0f}</text>')
    out.append(_legend(series, colours, width - right + 20, 30))
    out.append("</svg>")
    return "".join(out)


def _marker(shape: int, x: float, y: float, colour: str, tip: str) -> str:
    """A point drawn as circle, square, triangle or diamond (one shape per model variant)."""
    r = 5.5
    kind = shape % 4
    if kind == 0:
        body = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}"'
    elif kind == 1:
        body = f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}"'
    else:
        points = ([(x, y - r - 1), (x + r + 1, y + r), (x - r - 1, y + r)] if kind == 2 else
                  [(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)])
        body = '<polygon points="' + " ".join(f"{px:.1f},{py:.1f}" for px, py in points) + '"'
    return f'{body} fill="{colour}" fill-opacity=".85" stroke="#333" stroke-width=".6"><title>{tip}</title>' \
           + ("</circle>" if kind == 0 else "</rect>" if kind == 1 else "</polygon>")


def scatter(title: str, points: Sequence[tuple[float, float, str, str]], x_label: str, y_label: str) -> str:
    """(x, y, series, kind) points: colour = series (target), shape = kind (variant); x on a log scale."""
    series = list(dict.fromkeys(p[2] for p in points))
    kinds = list(dict.fromkeys(p[3] for p in points))
    colours = _colours(series)
    width, height, left, right, top_pad, bottom = 780, 340, 70, 190, 24, 50
    xs = [math.log10(p[0]) for p in points if p[0] > 0]
    ys = [p[1] for p in points]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    x_pad = (x_hi - x_lo) * 0.08 or 0.2
    y_pad = (y_hi - y_lo) * 0.15 or 0.005
    x_lo, x_hi, y_lo, y_hi = x_lo - x_pad, x_hi + x_pad, y_lo - y_pad, y_hi + y_pad
    plot_w, plot_h = width - left - right, height - top_pad - bottom

    def px(x: float) -> float:
        return left + plot_w * (math.log10(x) - x_lo) / (x_hi - x_lo)

    def py(y: float) -> float:
        return top_pad + plot_h * (1 - (y - y_lo) / (y_hi - y_lo))

    out = [_svg_open(width, height, title), f'<text x="{left}" y="14">{escape(title)}</text>',
           f'<rect x="{left}" y="{top_pad}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#bbb"/>']
    for i in range(5):
        value = y_lo + (y_hi - y_lo) * i / 4
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(value):.1f}" y2="{py(value):.1f}" '
                   f'stroke="#e6e6e6"/><text x="{left - 5}" y="{py(value) + 4:.1f}" text-anchor="end">'
                   f'{100 * value:.1f}</text>')
    for exponent in range(math.floor(x_lo), math.ceil(x_hi) + 1):
        for mantissa in (1, 2, 5):
            tick = mantissa * 10.0 ** exponent
            if x_lo <= math.log10(tick) <= x_hi:
                out.append(f'<line x1="{px(tick):.1f}" x2="{px(tick):.1f}" y1="{top_pad}" '
                           f'y2="{top_pad + plot_h}" stroke="#e6e6e6"/><text x="{px(tick):.1f}" '
                           f'y="{top_pad + plot_h + 15}" text-anchor="middle">{tick:g}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>'
               f'<text x="14" y="{top_pad + plot_h / 2}" transform="rotate(-90 14 {top_pad + plot_h / 2})" '
               f'text-anchor="middle">{escape(y_label)}</text>')
    for x, y, name, kind in points:
        if x > 0:
            tip = f"{escape(kind)} on {escape(name)}: {x:.4g} ms, top-1 {100 * y:.1f} %"
            out.append(_marker(kinds.index(kind), px(x), py(y), colours[name], tip))
    out.append(_legend(series, colours, width - right + 20, top_pad + 6))
    legend_y = top_pad + 6 + 16 * len(series) + 14
    for i, kind in enumerate(kinds):
        out.append(_marker(i, width - right + 25.5, legend_y + 16 * i + 5, "#fff", escape(kind))
                   + f'<text x="{width - right + 36}" y="{legend_y + 16 * i + 9}">{escape(kind)}</text>')
    out.append("</svg>")
    return "".join(out)


def stacked_bars(title: str, rows: Sequence[tuple[str, dict[str, float]]], parts: Sequence[str], unit: str) -> str:
    """One horizontal bar per row split into ``parts`` (e.g. the energy components of each port)."""
    colours = _colours(parts)
    bar, left, right = 16, 260, 150
    width = 880
    height = 34 + len(rows) * (bar + 6) + 10
    top = max((sum(values.values()) for _, values in rows), default=0.0) or 1.0
    plot = width - left - right
    out = [_svg_open(width, height, title), f'<text x="{left}" y="14">{escape(title)} ({escape(unit)})</text>']
    y = 26
    for label, values in rows:
        out.append(f'<text x="{left - 6}" y="{y + bar - 4}" text-anchor="end">{escape(label)}</text>')
        x = float(left)
        for part in parts:
            value = values.get(part, 0.0)
            w = plot * value / top
            if w > 0:
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.2f}" height="{bar}" fill="{colours[part]}">'
                           f'<title>{escape(label)}: {escape(part)} {value:.4g} {escape(unit)}</title></rect>')
            x += w
        out.append(f'<text x="{x + 4:.1f}" y="{y + bar - 4}">{sum(values.values()):.3g}</text>')
        y += bar + 6
    out.append(_legend(list(parts), colours, width - right + 40, 30))
    out.append("</svg>")
    return "".join(out)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(*, reference: ModelFigures, host_ms: float, steps: list[StepFigures], steps_note: str = "",
           figures: list[PortFigures],
           port_headers: Sequence[str], port_rows: dict[str, list[list]], timings: dict[str, float],
           command: str, test_file: str, test_outcome: str, test_passed: bool | None) -> str:
    """The whole report; every number comes from the records passed in."""
    targets = list(dict.fromkeys(f.target for f in figures))
    variants = list(dict.fromkeys(f.model.label for f in figures))
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>pytest-npu demo: digits CNN port</title><style>{_CSS}</style></head><body>",
           "<h1>Porting the digits CNN to NPUs</h1>",
           f"<p class='note'><code>{escape(command)}</code>, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
           f"{figures[0].samples if figures else 0} held-out digits emulated per port; float model top-1 "
           f"{100 * (reference.top1 or 0):.1f} % on them, {host_ms:.3f} ms per image on this host's CPU "
           "(onnxruntime, batch 1, median). Latency and energy are modelled by the emulator (deterministic), "
           "not measured on silicon.</p>"]
    out.append("<h2>1. Compression steps</h2>")
    out.append(_table(["variant", "step", "params", "size KiB", "MACs", "top-1 %", "MSE vs float", "seconds"],
                      [[s.variant, s.step, s.params, f"{s.size_kib:.1f}", s.macs,
                        "-" if s.top1 is None else f"{100 * s.top1:.1f}",
                        "-" if s.mse is None else f"{s.mse:.3g}",
                        "-" if s.seconds is None else f"{s.seconds:.1f}"] for s in steps]))
    out.append(f"<p class='note'>{escape(steps_note)}</p>" if steps_note else "")
    out.append("<h2>2. Before and after, per target</h2>")
    out.append("<p class='note'>MSE and SQNR compare each port's logits with the original float model's. For "
               "the pruned + distilled variants they also count the student's own departure from its teacher "
               "(a smaller network learns different logit scales), so read their top-1 first. Speedup = the "
               "float model's host CPU time / the modelled NPU latency.</p>")
    for target in targets:
        out.append(f"<h3>{escape(target)}</h3>{_table(port_headers, port_rows[target])}")
    out.append("<h3>Schedule against the roofline</h3><p class='note'>roofline = max(MACs / peak MACs per "
               "cycle, DRAM bytes / DRAM bytes per cycle); efficiency = roofline / modelled cycles.</p>")
    out.append(_table(["target", "model", "cycles", "roofline cycles", "efficiency", "SRAM peak KiB",
                       "DRAM KiB"],
                      [[f.target, f.model.label, f"{f.cycles:,}", f"{f.roofline_cycles:,}", f"{f.efficiency:.0%}",
                        f"{f.sram_kib:.1f}", f"{f.dram_kib:.1f}"] for f in figures]))
    out.append("<h2>3. Accuracy against latency</h2>")
    out.append(scatter("top-1 (%) against modelled latency per inference",
                       [(f.latency_ms, f.top1, f.target, f.model.label) for f in figures],
                       "modelled latency (ms, log scale)", "top-1 %"))
    out.append("<h2>4. Energy per inference</h2>")
    out.append(stacked_bars("energy per inference by component",
                            [(f"{f.model.label} @ {f.target}", {k: v * 1e3 for k, v in f.energy_breakdown_mj.items()})
                             for f in figures], ENERGY_PARTS, "uJ"))
    out.append("<p class='note'>" + "; ".join(
        f"{escape(f.model.label)} @ {escape(f.target)}: {escape(energy_split(f.energy_breakdown_mj, 3))}"
        for f in figures) + "</p>")
    out.append("<h2>5. Per-layer cycles</h2>")
    for variant in variants:
        mine = [f for f in figures if f.model.label == variant]
        layer_names = list(dict.fromkeys(row["layer"] for f in mine for row in f.layers))
        groups = [(name, {f.target: float(sum(r.get("cycles") or 0 for r in f.layers if r["layer"] == name))
                          for f in mine}) for name in layer_names]
        out.append(f"<h3>{escape(variant)}</h3>" + grouped_bars(f"cycles per layer, {variant}", groups, "cycles"))
    out.append("<h2>6. Ops on the host</h2>")
    fallback = [[f.target, f.model.label, layer, op, reason] for f in figures for layer, op, reason in f.unsupported]
    out.append(_table(["target", "model", "layer", "op", "reason"], fallback) if fallback else
               "<p>Every layer of every model runs on the NPU of every target.</p>")
    out.append("<h2>7. The test that holds these figures</h2>")
    if test_passed is None:
        verdict = "<span class='note'>not run</span>"
    else:
        verdict = "<span class='ok'>passed</span>" if test_passed else "<span class='bad'>FAILED</span>"
    out.append(f"<p><code>{escape(test_file)}</code>: {verdict}</p><pre>{escape(test_outcome)}</pre>")
    out.append("<h2>8. Per-layer detail</h2>")
    for f in figures:
        out.append(f"<h3>{escape(f.model.label)} on {escape(f.target)}</h3>{layer_table(f.layers)}")
    out.append("<h2>Time spent</h2>" + _table(["step", "seconds"], [[k, f"{v:.1f}"] for k, v in timings.items()]))
    out.append("</body></html>\n")
    return "\n".join(out)
