"""Screenshots of the two HTML pages, taken by headless Chromium with the network cut off.

    python docs/img/screenshots.py                # writes docs/img/demo-report.png, docs/img/history.png

What it does, all from real runs (nothing typed in):

1. ``pytest-npu demo --quick`` on three targets (u55-128 and u55-256 land on the same spot for the
   int8 models: the nested markers) writes the case study's report (``report.html``);
2. a small project runs one budget test on three targets as three releases: the int8 digits CNN
   (v1.0), its pruned + distilled student (v1.1, faster), and the student compiled with less SRAM
   (v1.2, slower: the history flags it), each recorded with ``--npu-history --npu-release``;
3. ``pytest-npu history --html`` draws the history page;
4. Chromium opens each page with every host name unresolvable and a dead proxy, so a page that
   needed the network would show empty charts, and saves a PNG.

Needs the ``html`` and ``torch`` extras and a Chromium (``apt-get install chromium``). The PNGs
are committed; rerun this after changing a page's look.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("u55-256", "u55-128", "edge-3core")
# (release, model file in the demo's models/, compile options): what changed between releases
RELEASES = (
    ("v1.0", "digits_int8.onnx", ""),
    ("v1.1", "digits_pruned-kd-int8.onnx", ""),
    ("v1.2", "digits_pruned-kd-int8.onnx", "sram_limit_bytes=2048"),
)
OFFLINE = ("--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9")

TEST_FILE = '''
import os

import pytest

from pytest_npu.harness import ModelPair
from reference_models import digits_cnn

MODEL = os.environ["PORT_MODEL"]
OPTIONS = dict(option.split("=") for option in os.environ.get("PORT_OPTIONS", "").split(",") if option)


@pytest.mark.npu_budget(latency_ms=0.05, compare={"cycles": 0, "energy_mj": "1%"})
def test_digits_port(npu, npu_target):
    images, labels = digits_cnn.test_data()
    npu.run(ModelPair(MODEL, digits_cnn.onnx_path()), (images, labels), reference="float",
            **{key: int(value) for key, value in OPTIONS.items()})
'''


def run(command: list[str], cwd: Path, env: dict | None = None) -> None:
    print("$ " + " ".join(command), flush=True)
    done = subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, text=True, capture_output=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("no Chromium on PATH: apt-get install chromium (Debian) or set PATH")


def screenshot(page: Path, png: Path, width: int, height: int, profile: Path) -> None:
    """Chromium headless, offline (no host resolves, dead proxy), JavaScript given time to draw."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", *OFFLINE, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
               f"--window-size={width},{height}", f"--screenshot={png}", page.resolve().as_uri()]
    print("$ chromium --headless ... --screenshot=" + str(png), flush=True)
    subprocess.run(command, check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE), help="where the PNGs go (default: docs/img)")
    parser.add_argument("--work", default=None, help="keep the runs here (default: a temporary directory)")
    args = parser.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="pytest-npu-shots-") as tmp:
        work = Path(args.work or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        python = sys.executable
        # relative paths throughout: the pages show the commands, and no path of this machine belongs in docs/
        run([python, "-m", "pytest_npu.cli", "demo", "--quick", "--targets", ",".join(TARGETS), "--out", "demo"], work)
        project = work / "project"
        project.mkdir(exist_ok=True)
        (project / "test_port.py").write_text(TEST_FILE)
        history = Path(".npu", "history.sqlite")
        if (project / history).exists():
            (project / history).unlink()
        for release, model, options in RELEASES:
            run([python, "-m", "pytest", "test_port.py", "-q", "-p", "no:cacheprovider", "--npu-no-baseline",
                 "--npu-history", str(history), "--npu-release", release,
                 *(f"--npu-target={t}" for t in TARGETS)], project,
                {"PORT_MODEL": str(Path("..", "demo", "models", model)), "PORT_OPTIONS": options})
        run([python, "-m", "pytest_npu.cli", "history", "--db", str(history), "--html", "history.html"], project)
        out.mkdir(parents=True, exist_ok=True)
        screenshot(work / "demo" / "report.html", out / "demo-report.png", 1280, 1700, work / "profile")
        screenshot(project / "history.html", out / "history.png", 1280, 1500, work / "profile")
    print(f"wrote {out / 'demo-report.png'} and {out / 'history.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
