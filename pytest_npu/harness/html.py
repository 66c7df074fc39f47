"""Self-contained HTML reports: plotly charts, readable tables, and the history page.

Charts are drawn by plotly with its JavaScript inlined once per file, so a report attached to a
CI run, mailed or opened from an artifact zip works with no network access, and still has hover
(the exact figure of every point), zoom and log axes. plotly is an optional extra
(``pip install 'pytest-npu[html]'``): budgets, baselines and history never need it, only the
pages do, and a page asked for without it fails with the command that installs it.

Tables take their cells from :mod:`pytest_npu.tables` (one number format everywhere) and the
per-layer columns from :data:`pytest_npu.compiler.report.LAYER_COLUMNS` (one order everywhere);
wide tables scroll inside their own box instead of widening the page.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape
from typing import Any

from ..errors import ReportError
from .history import Change, Point

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#d62728")
REGRESSED, IMPROVED = "#d62728", "#2ca02c"
INSTALL_HINT = "pip install 'pytest-npu[html]'"
CHART_CONFIG = {"displaylogo": False, "responsive": True,
                "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}
# decimal notation with thousands separators (d3-format): 10,010 and 0.00154, never 1.001e+04
AXIS_NUMBERS = ",.4~r"

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1400px;
  padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.45em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{font-size:1em;margin:1.2em 0 .4em}
.note{color:#555;font-size:.88em;max-width:60em}
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0} .tall{max-height:24em;overflow-y:auto}
table{border-collapse:collapse;font-size:.84em;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d4d4d4;padding:3px 8px;white-space:nowrap}
th{background:#f3f3f3;text-align:left;font-weight:600} td{text-align:left} td.n,th.n{text-align:right}
tr:nth-child(even) td{background:#fafafa}
.bar{background:#1f77b4;height:.7em;display:inline-block;margin-right:.4em;vertical-align:middle}
.reg{color:#c00;font-weight:600} .ok{color:#080;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(350px,1fr));gap:14px}
figure{margin:0;border:1px solid #e2e2e2;border-radius:4px;padding:4px 6px 0}
figcaption{font-size:.82em;color:#333;overflow-wrap:anywhere} figcaption b{font-weight:600}
details{margin:.4em 0} summary{cursor:pointer}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.78em}
"""


def require_plotly() -> Any:
    """plotly's graph objects, or a ReportError naming the extra that provides them."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise ReportError(f"HTML reports draw their charts with plotly, which is not installed: "
                          f"{INSTALL_HINT}") from None
    return go


class Page:
    """One HTML file: the style, plotly's JavaScript once (only if a chart is on the page), the body."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.charts = 0

    def add(self, *html: str) -> None:
        self.parts.extend(html)

    def chart(self, figure: Any, height: int, toolbar: bool = True) -> str:
        """A figure as a <div> (stable id, so the same figures give the same file); small charts go
        without plotly's toolbar (drag still zooms, a double click resets)."""
        import plotly.io as pio

        self.charts += 1
        config = CHART_CONFIG if toolbar else {**CHART_CONFIG, "displayModeBar": False}
        return pio.to_html(figure, full_html=False, include_plotlyjs=False, config=config,
                           default_width="100%", default_height=f"{height}px", div_id=f"chart-{self.charts}")

    def render(self) -> str:
        script = ""
        if self.charts:
            from plotly.offline import get_plotlyjs

            script = f"<script>{get_plotlyjs()}</script>"
        return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
                f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
                f"<title>{escape(self.title)}</title><style>{_STYLE}</style>{script}</head><body>\n"
                + "\n".join(self.parts) + "\n</body></html>\n")


def layout(**overrides: Any) -> dict:
    """The look shared by every chart: white template, system font, small margins, readable ticks."""
    base: dict[str, Any] = {"template": "plotly_white", "margin": {"l": 60, "r": 16, "t": 10, "b": 40},
                            "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
                            "hoverlabel": {"namelength": -1}}
    base.update(overrides)
    return base


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None,
          tall: bool = False) -> str:
    """An HTML table of already-formatted cells, in a box that scrolls sideways when it is wide
    (and, with ``tall``, down when it is long, so what follows stays in view).

    A cell may be ``("text", "raw html")`` to carry markup (e.g. a share bar); other cells are escaped.
    """
    numeric = list(numeric) if numeric is not None else [False] * len(headers)

    def td(value: Any, right: bool) -> str:
        body = value[1] if isinstance(value, tuple) else escape("" if value is None else str(value))
        return f"<td class='n'>{body}</td>" if right else f"<td>{body}</td>"

    head = "".join(f"<th class='n'>{escape(h)}</th>" if r else f"<th>{escape(h)}</th>"
                   for h, r in zip(headers, numeric))
    body = "".join("<tr>" + "".join(td(v, r) for v, r in zip(row, numeric)) + "</tr>" for row in rows)
    box = "scroll tall" if tall else "scroll"
    return f"<div class='{box}'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def layer_table(layers: list[dict], **derived: Any) -> str:
    """A compiler's per-layer rows in the fixed column order, units in the headers, a bar for the
    layer's share of the cycles; ``derived``: :func:`~pytest_npu.compiler.report.layer_view` options."""
    from ..compiler.report import layer_columns, layer_view

    view = layer_view(layers, **derived)
    columns = layer_columns(view)
    rows = []
    for row in view:
        cells: list[Any] = []
        for column in columns:
            text = column.text(row.get(column.key))
            if column.key == "cycles_share" and text:
                width = 80 * float(row[column.key])
                cells.append((text, f"<span class='bar' style='width:{width:.1f}px'></span>{escape(text)}"))
            else:
                cells.append(text)
        rows.append(cells)
    return table([c.header for c in columns], rows, [c.right for c in columns])


# --------------------------------------------------------------------------------------------------
# the history page


def _metric_info(metric: str) -> tuple[str, str, tuple[float | None, float | None]]:
    """(unit, what it measures and which way is better, the metric's possible range)."""
    from .markers import METRICS

    known = METRICS.get(metric)
    if known is None:
        return "", "", (None, None)
    better = "higher is better" if known.higher_is_better else "lower is better"
    return known.unit, f"{known.help}; {better}", (known.lo, known.hi)


def _metric_order(metric: str) -> tuple[int, str]:
    """Costs first, then accuracy, as the metric vocabulary lists them; unknown metrics last."""
    from .markers import METRICS

    names = list(METRICS)
    return (names.index(metric) if metric in names else len(names), metric)


def value_axis(values: Sequence[float], bounds: tuple[float | None, float | None] = (None, None)) -> dict:
    """A y axis that neither flattens nor magnifies: log when the values span a decade or more;
    otherwise linear around the middle, at least +-5 % of the median, so a 0.9 % step stays a small
    step, and never past what the metric can be (a cosine above 1, a negative cycle count)."""
    finite = [v for v in values if math.isfinite(v)]
    axis: dict[str, Any] = {"tickformat": AXIS_NUMBERS, "zeroline": False, "automargin": True, "nticks": 6}
    if not finite:
        return axis
    low, high = min(finite), max(finite)
    if low > 0 and high / low >= 10:
        return {**axis, "type": "log"}
    half = max((high - low) / 2 * 1.3, abs(statistics.median(finite)) * 0.05) or 1.0
    centre = (high + low) / 2
    bottom, top = centre - half, centre + half
    floor, ceiling = bounds
    if floor is not None and bottom < floor <= low:
        bottom, top = floor, max(top, floor + 2 * half)
    if ceiling is not None and top > ceiling >= high:
        top, bottom = ceiling, min(bottom, ceiling - 2 * half)
    return {**axis, "range": [bottom, top]}


def _trend(page: Page, metric: str, mine: list[Point], labels: list[str],
           steps: dict[tuple[int, str, str, str], Change], regressed: set[tuple[int, str, str, str]]) -> str:
    go = require_plotly()
    unit, _, bounds = _metric_info(metric)
    hover, colours, sizes, symbols = [], [], [], []
    previous: Point | None = None
    for point in mine:
        key = (point.run_id, point.test, point.target, point.metric)
        change = steps.get(key)
        text = f"{escape(point.label)}: {_num(point.value)} {escape(unit)}"
        if change is not None and change.before is not None:
            text += f"<br>vs previous: {escape(change.delta_text)}"
            if change.tolerance:
                text += f"<br>tolerance: {escape(str(change.tolerance))}"
        elif previous is not None:           # no verdict passed in for this step: the plain difference
            delta = point.value - previous.value
            relative = f" ({delta / abs(previous.value):+.2%})" if previous.value else ""
            sign = "+" if delta >= 0 else "-"
            text += f"<br>vs {escape(previous.label)}: {sign}{_num(abs(delta))}{relative}"
        previous = point
        bad = key in regressed
        good = change is not None and change.status == "improved"
        text += "<br><b>regressed</b>" if bad else ("<br>improved" if good else "")
        hover.append(text)
        colours.append(REGRESSED if bad else IMPROVED if good else PALETTE[0])
        sizes.append(13 if bad else 8)
        symbols.append("x" if bad else "circle")
    figure = go.Figure(go.Scatter(
        x=[p.label for p in mine], y=[p.value for p in mine], mode="lines+markers",
        line={"color": PALETTE[0], "width": 2},
        marker={"color": colours, "size": sizes, "symbol": symbols, "line": {"width": 0}},
        cliponaxis=False, hovertext=hover, hoverinfo="text", showlegend=False))
    figure.update_layout(**layout(margin={"l": 64, "r": 14, "t": 12, "b": 10}))
    figure.update_xaxes(type="category", categoryorder="array", categoryarray=labels, automargin=True)
    figure.update_yaxes(title_text=unit or None, **value_axis([p.value for p in mine], bounds))
    return page.chart(figure, height=220, toolbar=False)


def _num(value: float | None) -> str:
    from .. import tables

    return tables.cell(value)


def render_history(points: Sequence[Point], layers: dict[tuple[str, str], list[dict]],
                   regressions: Sequence[tuple[Point, Change]], *, source: str = "",
                   steps: Sequence[tuple[Point, Change]] = ()) -> str:
    """The page: regressions first, then per metric one small chart per test x target (x: releases in
    order; red crosses: steps the test's tolerance flags), then the latest run's per-layer tables.

    ``steps``: every consecutive change (regressed or not), for the hover text; ``regressions`` alone
    decides the markers.
    """
    require_plotly()
    from .. import tables

    regressed = {(p.run_id, p.test, p.target, p.metric) for p, _ in regressions}
    step_of = {(p.run_id, p.test, p.target, p.metric): c for p, c in [*steps, *regressions]}
    ordered = sorted(points, key=lambda p: p.order)     # runs in time order (merged ids are not)
    labels = list(dict.fromkeys(p.label for p in ordered))
    page = Page("pytest-npu history")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page.add("<h1>pytest-npu history</h1>",
             f"<p class='note'>{len(labels)} releases/commits ({escape(', '.join(labels))}) from "
             f"<code>{escape(source)}</code>, generated {stamp}. Each chart is one test on one target; "
             "a red cross marks a step its tolerance flags as a regression. Hover a point for its figure.</p>")
    if regressions:
        flagged_rows = [[tables.without_target(p.test, p.target), p.target, p.metric, p.label, _num(c.before),
                         _num(c.after), ("", f"<span class='reg'>{escape(c.delta_text)}</span>"),
                         str(c.tolerance or "")] for p, c in regressions]
        page.add(f"<h2 class='reg'>{len(regressions)} regression{'s' if len(regressions) != 1 else ''} "
                 "between consecutive releases</h2>",
                 table(["test", "target", "metric", "release", "before", "after", "change", "tolerance"],
                       flagged_rows, [False, False, False, False, True, True, True, False], tall=True))
    else:
        page.add("<p class='ok'>No regressions between consecutive releases.</p>")
    for metric in sorted({p.metric for p in points}, key=_metric_order):
        _, about, _ = _metric_info(metric)
        page.add(f"<h2>{escape(metric)}</h2>" + (f"<p class='note'>{escape(about)}.</p>" if about else ""))
        panels = []
        series = sorted({(p.test, p.target) for p in points if p.metric == metric})
        for test_name, target_name in series:
            mine = [p for p in ordered if (p.metric, p.test, p.target) == (metric, test_name, target_name)]
            flagged = any((p.run_id, p.test, p.target, p.metric) in regressed for p in mine)
            caption = (f"<b>{escape(tables.without_target(test_name, target_name))}</b> on "
                       f"{escape(target_name)}" + (" <span class='reg'>regressed</span>" if flagged else ""))
            panels.append(f"<figure><figcaption>{caption}</figcaption>"
                          f"{_trend(page, metric, mine, labels, step_of, regressed)}</figure>")
        page.add(f"<div class='grid'>{''.join(panels)}</div>")
    if layers and ordered:
        latest = ordered[-1]
        page.add(f"<h2 id='layers'>Per-layer figures of the latest run ({escape(latest.label)})</h2>")
        for i, ((test_name, target_name), layer_rows) in enumerate(sorted(layers.items())):
            cycles = sum(int(r.get("cycles") or 0) for r in layer_rows)
            name = escape(tables.without_target(test_name, target_name))
            page.add(f"<details{' open' if i == 0 else ''}><summary><b>{name}</b> on {escape(target_name)}: "
                     f"{len(layer_rows)} layers, {tables.integer(cycles)} cycles</summary>"
                     f"{layer_table(layer_rows)}</details>")
    return page.render()
