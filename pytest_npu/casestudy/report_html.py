"""The case study as one self-contained HTML file: tables and plotly charts (see harness.html).

Charts: accuracy against latency (log latency; each target its colour and marker size, each
variant its symbol, all drawn as outlines, so ports that land on the same spot stay visible,
nested), the energy of every port split into its components (stacked bars with their legend), and
per-layer cycles per target. Every figure comes from the records passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape

from .. import tables
from ..harness.html import PALETTE, Page, layer_table, layout, require_plotly, table
from .table import ENERGY_PARTS, STEP_HEADERS, ModelFigures, PortFigures, StepFigures, step_row

SYMBOLS = ("circle", "square", "diamond", "triangle-up", "star", "hexagon")
ENERGY_COLOURS = dict(zip(ENERGY_PARTS, ("#1f77b4", "#17becf", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728",
                                         "#8c8c8c")))


def _colours(names: Sequence[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def accuracy_latency(page: Page, figures: list[PortFigures]) -> str:
    """top-1 against modelled latency: colour and size = target (larger first, so coinciding ports
    nest), symbol = model variant, all drawn as outlines so a point on top of another never hides
    it; two keys (targets, variants), hover for the figures."""
    go = require_plotly()
    targets = list(dict.fromkeys(f.target for f in figures))
    variants = list(dict.fromkeys(f.model.label for f in figures))
    colours = _colours(targets)
    sizes = {target: max(8, 24 - 5 * rank) for rank, target in enumerate(targets)}
    figure = go.Figure()
    for target in targets:
        for v, variant in enumerate(variants):
            mine = [f for f in figures if f.target == target and f.model.label == variant]
            if not mine:
                continue
            figure.add_trace(go.Scatter(
                x=[f.latency_ms for f in mine], y=[100 * f.top1 for f in mine], mode="markers",
                legendgroup=target, showlegend=False,
                marker={"symbol": SYMBOLS[v % len(SYMBOLS)] + "-open", "size": sizes[target],
                        "color": colours[target], "line": {"width": 2.5}},
                hovertemplate=(f"<b>{escape(variant)}</b> on {escape(target)}<br>latency %{{x:,.4~r}} ms"
                               "<br>top-1 %{y:.1f} %<extra></extra>")))
    # the keys: one entry per target (a click hides its ports), one per variant's symbol
    for target in targets:
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=target, legendgroup=target,
                                    marker={"symbol": "circle", "size": 12, "color": colours[target]}))
    for v, variant in enumerate(variants):
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=variant, legend="legend2",
                                    hoverinfo="skip",
                                    marker={"symbol": SYMBOLS[v % len(SYMBOLS)] + "-open", "size": 11,
                                            "color": "#555", "line": {"width": 2}}))
    figure.update_layout(**layout(
        legend={"title": {"text": "target"}, "x": 1.02, "y": 1, "yanchor": "top"},
        legend2={"title": {"text": "variant"}, "x": 1.02, "y": 0.45, "yanchor": "top", "itemclick": False,
                 "itemdoubleclick": False},
        margin={"l": 60, "r": 10, "t": 34, "b": 50}))
    figure.update_xaxes(type="log", title_text="modelled latency per inference (ms, log scale)",
                        tickformat=",.2~r")
    figure.update_yaxes(title_text="top-1 on the held-out digits (%)", tickformat=".1f")
    return page.chart(figure, height=400)


def energy_split(page: Page, figures: list[PortFigures]) -> str:
    """Energy per inference of every port, one stacked bar split into the cost model's components."""
    go = require_plotly()
    names = [f"{f.model.label} @ {f.target}" for f in figures]
    figure = go.Figure()
    for part in ENERGY_PARTS:
        values = [1e3 * f.energy_breakdown_mj.get(part, 0.0) for f in figures]
        if not any(values):
            continue
        totals = [1e3 * f.energy_mj for f in figures]
        shares = [v / t if t else 0.0 for v, t in zip(values, totals)]
        figure.add_trace(go.Bar(
            y=names, x=values, name=part, orientation="h", marker_color=ENERGY_COLOURS[part],
            customdata=[[s * 100] for s in shares],
            hovertemplate=f"{part}: %{{x:,.4~r}} uJ (%{{customdata[0]:.1f}} %)<extra>%{{y}}</extra>"))
    for name, f in zip(names, figures):
        figure.add_annotation(x=1e3 * f.energy_mj, y=name, text=f"{tables.decimal(1e3 * f.energy_mj, 3)} uJ",
                              showarrow=False, xanchor="left", xshift=4, font={"size": 11})
    figure.update_layout(**layout(barmode="stack", legend={"title": {"text": "component"}, "traceorder": "normal"},
                                  margin={"l": 10, "r": 10, "t": 34, "b": 45}))
    figure.update_xaxes(title_text="energy per inference (uJ)", tickformat=",.3~r")
    figure.update_yaxes(autorange="reversed", automargin=True)
    return page.chart(figure, height=90 + 34 * len(figures))


def layer_cycles(page: Page, variant: str, mine: list[PortFigures]) -> str:
    """Cycles per layer, one bar per target, layers in graph order top to bottom."""
    go = require_plotly()
    targets = list(dict.fromkeys(f.target for f in mine))
    colours = _colours(targets)
    layer_names = list(dict.fromkeys(row["layer"] for f in mine for row in f.layers))
    figure = go.Figure()
    for f in mine:
        cycles = {name: sum(int(r.get("cycles") or 0) for r in f.layers if r["layer"] == name)
                  for name in layer_names}
        figure.add_trace(go.Bar(
            y=layer_names, x=[cycles[n] for n in layer_names], name=f.target, orientation="h",
            marker_color=colours[f.target],
            hovertemplate=f"%{{y}} on {escape(f.target)}: %{{x:,}} cycles<extra></extra>"))
    figure.update_layout(**layout(barmode="group", legend={"title": {"text": "target"}},
                                  margin={"l": 10, "r": 10, "t": 34, "b": 45}))
    figure.update_xaxes(title_text=f"cycles per inference, {variant}", tickformat=",~r")
    figure.update_yaxes(autorange="reversed", automargin=True)
    return page.chart(figure, height=80 + len(layer_names) * (10 + 12 * len(targets)))


def _numeric(headers: Sequence[str]) -> list[bool]:
    words = ("model", "variant", "step", "target", "energy split", "layer", "op", "reason")
    return [h not in words for h in headers]


def render(*, reference: ModelFigures, host_ms: float, steps: list[StepFigures], steps_note: str = "",
           figures: list[PortFigures],
           port_headers: Sequence[str], port_rows: dict[str, list[list]], timings: dict[str, float],
           command: str, test_file: str, test_outcome: str, test_passed: bool | None) -> str:
    """The whole report; every number comes from the records passed in."""
    require_plotly()
    targets = list(dict.fromkeys(f.target for f in figures))
    variants = list(dict.fromkeys(f.model.label for f in figures))
    page = Page("pytest-npu demo: digits CNN port")
    samples = figures[0].samples if figures else 0
    page.add("<h1>Porting the digits CNN to NPUs</h1>",
             f"<p class='note'><code>{escape(command)}</code>, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
             f"{samples} held-out digits emulated per port; the float model scores "
             f"{100 * (reference.top1 or 0):.1f} % top-1 on them and takes {host_ms:.3f} ms per image on this "
             "host's CPU (onnxruntime, batch 1, median). Latency and energy are modelled by the emulator "
             "(deterministic), not measured on silicon. Hover a chart for exact figures.</p>")

    page.add("<h2>1. Accuracy against latency</h2>", accuracy_latency(page, figures),
             "<p class='note'>Colour and size: target; symbol: model variant. Markers are outlines, larger "
             "for the first targets, so ports that land on the same spot show nested; drag to zoom into "
             "them, hover for each one's figures.</p>")
    page.add("<h2>2. Energy per inference</h2>", energy_split(page, figures))

    page.add("<h2>3. Before and after, per target</h2>",
             "<p class='note'>MSE and SQNR compare each port's logits with the original float model's; "
             "for the pruned + distilled variants they also count the student's own departure from its "
             "teacher, so read their top-1 first. Speedup = the float model's host CPU time / the "
             "modelled NPU latency.</p>")
    shown = [i for i, h in enumerate(port_headers) if h != "energy split"]     # the chart above shows it
    headers = [port_headers[i] for i in shown]
    for target in targets:
        page.add(f"<h3>{escape(target)}</h3>",
                 table(headers, [[row[i] for i in shown] for row in port_rows[target]], _numeric(headers)))
    page.add("<h3>Schedule against the roofline</h3><p class='note'>roofline = max(MACs / peak MACs per "
             "cycle, DRAM bytes / DRAM bytes per cycle); efficiency = roofline / modelled cycles.</p>")
    roof_headers = ["target", "model", "cycles", "roofline cycles", "efficiency %", "SRAM peak KiB", "DRAM KiB"]
    page.add(table(roof_headers,
                   [[f.target, f.model.label, tables.integer(f.cycles), tables.integer(f.roofline_cycles),
                     tables.percent(f.efficiency, 0), f"{f.sram_kib:.1f}", f"{f.dram_kib:.1f}"] for f in figures],
                   _numeric(roof_headers)))

    page.add("<h2>4. Compression steps</h2>")
    page.add(table(STEP_HEADERS, [step_row(s) for s in steps], _numeric(STEP_HEADERS)))
    if steps_note:
        page.add(f"<p class='note'>{escape(steps_note)}</p>")

    page.add("<h2>5. Per-layer cycles</h2>")
    for variant in variants:
        mine = [f for f in figures if f.model.label == variant]
        page.add(f"<h3>{escape(variant)}</h3>", layer_cycles(page, variant, mine))

    page.add("<h2>6. Ops on the host</h2>")
    fallback = [[f.target, f.model.label, layer, op, reason] for f in figures for layer, op, reason in f.unsupported]
    page.add(table(["target", "model", "layer", "op", "reason"], fallback) if fallback else
             "<p>Every layer of every model runs on the NPU of every target.</p>")

    page.add("<h2>7. The test that holds these figures</h2>")
    if test_passed is None:
        verdict = "<span class='note'>not run</span>"
    else:
        verdict = "<span class='ok'>passed</span>" if test_passed else "<span class='reg'>FAILED</span>"
    page.add(f"<p><code>{escape(test_file)}</code>: {verdict}</p><pre>{escape(test_outcome)}</pre>")

    page.add("<h2 id='layers'>8. Per-layer detail</h2>")
    for i, f in enumerate(figures):
        page.add(f"<details{' open' if i == 0 else ''}><summary><b>{escape(f.model.label)}</b> on {escape(f.target)}: "
                 f"{len(f.layers)} layers, {tables.integer(f.cycles)} cycles</summary>{layer_table(f.layers)}</details>")
    page.add("<h2>Time spent</h2>",
             table(["step", "seconds"], [[k, f"{v:.1f}"] for k, v in timings.items()], [False, True]))
    return page.render()
