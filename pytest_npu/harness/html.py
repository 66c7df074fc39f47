"""A self-contained HTML history report: one inline-SVG line chart per metric, per-layer tables.

No JavaScript and no external assets, so the file can be attached to a CI run, mailed or opened
from an artifact zip and still render; tooltips are SVG ``<title>`` elements.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape
from itertools import groupby
from typing import Any

from .history import Change, Point

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 280, 80, 20, 20, 60

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:2em} h3{font-size:1em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right} th{background:#f3f3f3}
td.l,th.l{text-align:left} .bar{background:#1f77b4;height:.8em;display:inline-block}
.legend span{display:inline-block;margin-right:1.2em;font-size:.85em}
.sw{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:middle}
.reg{color:#c00;font-weight:bold} svg text{font-size:11px;fill:#444}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(str(value))
    return f"{value:,}" if isinstance(value, int) else f"{value:.6g}"


def line_chart(metric: str, points: Sequence[Point], regressed: set[tuple[int, str, str, str]]) -> str:
    """One SVG chart: x = release/commit in run order, one line per test x target, regressions in red."""
    labels = list(dict.fromkeys(p.label for p in sorted(points, key=lambda p: p.run_id)))
    values = [p.value for p in points]
    low, high = min(values), max(values)
    if high == low:
        pad = abs(high) * 0.05 or 1.0
        low, high = low - pad, high + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(label: str) -> float:
        return LEFT + (plot_w * labels.index(label) / (len(labels) - 1) if len(labels) > 1 else plot_w / 2)

    def y_of(value: float) -> float:
        return TOP + plot_h * (1 - (value - low) / (high - low))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(metric)} across releases">',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>']
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        value = low + (high - low) * fraction
        y = y_of(value)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.4g}</text>')
    for label in labels:
        x = x_of(label)
        parts.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="end" '
                     f'transform="rotate(-30 {x:.1f} {TOP + plot_h + 16})">{escape(label[:18])}</text>')
    series = sorted({(p.test, p.target) for p in points})
    legend = []
    for index, (test_name, target_name) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        mine = sorted((p for p in points if (p.test, p.target) == (test_name, target_name)), key=lambda p: p.run_id)
        coords = " ".join(f"{x_of(p.label):.1f},{y_of(p.value):.1f}" for p in mine)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        for p in mine:
            bad = (p.run_id, p.test, p.target, p.metric) in regressed
            parts.append(f'<circle cx="{x_of(p.label):.1f}" cy="{y_of(p.value):.1f}" r="{6 if bad else 3.5}" '
                         f'fill="{"#d00" if bad else colour}"><title>{escape(p.test)} [{escape(p.target)}] '
                         f'{escape(p.label)}: {p.value:.6g}{" (regressed)" if bad else ""}</title></circle>')
        legend.append(f'<span><i class="sw" style="background:{colour}"></i>{escape(test_name)} '
                      f'[{escape(target_name)}]</span>')
    parts.append("</svg>")
    return "".join(parts) + f'<div class="legend">{"".join(legend)}</div>'


def layer_table(layers: list[dict]) -> str:
    """Every column the compiler reported, plus a bar of each layer's share of the cycles."""
    columns = list(dict.fromkeys(key for layer in layers for key in layer))
    total = sum(float(layer.get("cycles", 0) or 0) for layer in layers
                if isinstance(layer.get("cycles"), (int, float)))
    head = "".join(f'<th class="{"l" if i == 0 else ""}">{escape(c)}</th>' for i, c in enumerate(columns))
    head += "<th class='l'>share of cycles</th>" if total else ""
    body = []
    for layer in layers:
        cells = "".join(f'<td class="{"l" if not isinstance(layer.get(c), (int, float)) else ""}">'
                        f'{_fmt(layer.get(c, ""))}</td>' for c in columns)
        if total:
            share = float(layer.get("cycles", 0) or 0) / total
            cells += f'<td class="l"><span class="bar" style="width:{share * 200:.1f}px"></span> {share:.1%}</td>'
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_history(points: Sequence[Point], layers: dict[tuple[str, str], list[dict]],
                   regressions: Sequence[tuple[Point, Change]], *, source: str = "") -> str:
    """The whole report: summary of regressions, a chart per metric, per-layer tables of the latest run."""
    regressed = {(p.run_id, p.test, p.target, p.metric) for p, _ in regressions}
    labels = list(dict.fromkeys(p.label for p in sorted(points, key=lambda p: p.run_id)))
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>pytest-npu history</title><style>{_STYLE}</style></head><body>",
           "<h1>pytest-npu history</h1>",
           f"<p>{len(labels)} releases/commits ({escape(', '.join(labels))}) from <code>{escape(source)}</code>; "
           f"generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}.</p>"]
    if regressions:
        out.append(f"<h2 class='reg'>{len(regressions)} regressions between consecutive releases</h2><table>"
                   "<tr><th class='l'>test</th><th class='l'>target</th><th class='l'>metric</th>"
                   "<th class='l'>release</th><th>before</th><th>after</th><th>change</th></tr>")
        for point, change in regressions:
            out.append(f"<tr><td class='l'>{escape(point.test)}</td><td class='l'>{escape(point.target)}</td>"
                       f"<td class='l'>{escape(point.metric)}</td><td class='l'>{escape(point.label)}</td>"
                       f"<td>{_fmt(change.before)}</td><td>{_fmt(change.after)}</td>"
                       f"<td class='reg'>{escape(change.delta_text)}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No regressions between consecutive releases.</p>")
    for metric, group in groupby(sorted(points, key=lambda p: p.metric), key=lambda p: p.metric):
        out.append(f"<h2>{escape(metric)}</h2>{line_chart(metric, list(group), regressed)}")
    if layers:
        latest = max(points, key=lambda p: p.run_id)
        out.append(f"<h2>Per-layer breakdown of the latest run ({escape(latest.label)})</h2>")
        for (test_name, target_name), rows in sorted(layers.items()):
            out.append(f"<h3>{escape(test_name)} [{escape(target_name)}]</h3>{layer_table(rows)}")
    out.append("</body></html>\n")
    return "\n".join(out)
