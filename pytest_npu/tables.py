"""How figures read in every table pytest-npu prints or writes (terminal, HTML, CSV).

One place decides the cell text, so a layer, a port or a test reads the same everywhere:
integers with thousands separators, floats with a few significant digits and never in exponent
notation, shapes as ``8x8x1``, a missing figure as an empty cell (never ``None``). Terminal
tables are fitted to the terminal's width by leaving out their least important columns, and
say which ones they left out.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from typing import Any


def integer(value: Any) -> str:
    """``7703`` -> ``7,703``; exact figures stay exact."""
    return "" if value is None else f"{int(value):,}"


def decimal(value: Any, digits: int = 3) -> str:
    """A float with ``digits`` significant digits, positional (``0.0000474``, never ``4.74e-05``)."""
    if value is None:
        return ""
    value = float(value)
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    places = max(0, digits - 1 - magnitude)
    text = f"{value:,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent(fraction: Any, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.7512`` -> ``75.1``; the header carries the ``%``."""
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return ""
    return f"{100 * float(fraction):.{digits}f}"


def _is_shape(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(d, int) and not isinstance(d, bool)
                                                    for d in value)


def shape(value: Any) -> str:
    """``(8, 8, 1)`` -> ``8x8x1``; a list of shapes -> ``8x8x1, 10``; ``()`` -> ``scalar``."""
    if value is None:
        return ""
    if _is_shape(value):
        return "x".join(map(str, value)) if value else "scalar"
    if isinstance(value, (list, tuple)):
        return ", ".join(shape(item) for item in value)
    return str(value)


def shapes(value: Any) -> str:
    """A list of shapes (a layer's inputs or outputs): ``[[8, 8, 1], [10]]`` -> ``8x8x1, 10``;
    no shapes -> empty."""
    if not value:
        return ""
    return ", ".join(shape(item) for item in value) if all(isinstance(v, (list, tuple)) for v in value) \
        else shape(value)


def cell(value: Any) -> str:
    """Any figure as table text: the generic rule for a column nobody has described."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return integer(value)
    if isinstance(value, float):
        return integer(value) if value.is_integer() and abs(value) >= 1000 else decimal(value, 4)
    if isinstance(value, (list, tuple)):
        return shape(value)
    return str(value)


def without_target(name: str, target: str) -> str:
    """``test_x.py::test_port[u55-256]`` -> ``test_x.py::test_port`` where a target column says it
    (``test_port[int8-u55-256]`` -> ``test_port[int8]``)."""
    if name.endswith(f"[{target}]"):
        return name[: -len(target) - 2]
    if name.endswith(f"-{target}]"):
        return name[: -len(target) - 2] + "]"
    return name


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters in the middle (``test_port_w…criptive_name``): both ends
    of a test name tell tests apart."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def terminal_width(default: int = 100) -> int:
    """Columns of the terminal (``COLUMNS`` wins, as for every console program)."""
    return shutil.get_terminal_size((default, 24)).columns


def fit(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None,
        drop_order: Sequence[str] | None = None, right: Sequence[bool] | None = None,
        tablefmt: str = "simple") -> tuple[str, list[str]]:
    """Tabulate, leaving out columns (those in ``drop_order``, in that order; with None, from the
    right, never the first) until the table fits in ``width`` characters or nothing is left to drop.
    Returns the table and the left-out headers (:func:`widest` tells whether it fits).

    ``right[i]`` right-aligns column ``i`` (figures); cells are text already, so nothing is re-parsed.
    """
    from tabulate import tabulate

    right = list(right) if right is not None else [False] * len(headers)

    def render(columns: list[int]) -> str:
        return tabulate([[row[i] for i in columns] for row in rows], headers=[headers[i] for i in columns],
                        tablefmt=tablefmt, disable_numparse=True,
                        colalign=["right" if right[i] else "left" for i in columns])

    keep = list(range(len(headers)))
    order = ([headers.index(h) for h in drop_order if h in headers] if drop_order is not None
             else list(reversed(range(1, len(headers)))))
    dropped: list[int] = []
    text = render(keep)
    while width is not None and widest(text) > width and order and len(keep) > 2:
        dropped.append(order.pop(0))
        keep.remove(dropped[-1])
        text = render(keep)
    # a wide column left out late may have made room for narrower ones left out before it
    for index in reversed(list(dropped)):
        trial = sorted([*keep, index])
        candidate = render(trial)
        if width is not None and widest(candidate) <= width:
            keep, text = trial, candidate
            dropped.remove(index)
    return text, [headers[i] for i in dropped]


def widest(text: str) -> int:
    """The longest line of ``text``: what a table needs of the terminal."""
    return max((len(line) for line in text.splitlines()), default=0)


def left_out_note(dropped: Sequence[str], where: str, width: int | None = None) -> str:
    """The lines under a fitted table that say what it left out and where to find it."""
    import textwrap

    if not dropped:
        return ""
    note = f"(left out to fit the terminal: {', '.join(dropped)}; {where})"
    return textwrap.fill(note, width, break_on_hyphens=False) if width else note
