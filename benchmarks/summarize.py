"""Turn a pytest-benchmark JSON file into the Markdown tables the README shows.

    python -m pytest benchmarks -p no:xdist --benchmark-only --benchmark-json=bench.json
    python benchmarks/summarize.py bench.json

One table per benchmark module: each row is a benchmark, with its mean wall time and every
``extra_info`` figure it recorded (ratios, GMAC/s, cycles vs roofline...). Nothing is typed in by
hand: the README's "Measured" section is this script's output.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

from tabulate import tabulate


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)[:60]
    return value


def tables(data: dict) -> str:
    by_module: dict[str, list[dict]] = defaultdict(list)
    for bench in data["benchmarks"]:
        by_module[bench["fullname"].split("::")[0]].append(bench)
    out = []
    for module, benches in sorted(by_module.items()):
        keys: list[str] = []
        for bench in benches:
            keys += [k for k in bench.get("extra_info", {}) if k not in keys]
        rows = [[bench["name"], f"{bench['stats']['mean'] * 1e3:.3g}"]
                + [_fmt(bench.get("extra_info", {}).get(k, "")) for k in keys] for bench in benches]
        out.append(f"### {module}\n\n" + tabulate(rows, ["benchmark", "mean ms", *keys], tablefmt="github"))
    machine = data.get("machine_info", {})
    out.append(f"Host: {machine.get('cpu', {}).get('brand_raw', '?')}, "
               f"{machine.get('cpu', {}).get('count', '?')} cores, Python {machine.get('python_version', '?')}.")
    return "\n\n".join(out) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as fh:
        print(tables(json.load(fh)))
