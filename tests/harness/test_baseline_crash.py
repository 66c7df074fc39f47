"""A baseline writer killed with SIGKILL mid-write leaves the old or the new file, never half of one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from pytest_npu.harness import baseline as bl

WRITER = """
import sys
from pytest_npu.harness import baseline as bl
path, tests = sys.argv[1], int(sys.argv[2])
for round_ in range(100_000):
    document = bl.BaselineFile(bl.Path(path), "tests/test_big.py")
    for index in range(tests):
        document.set_entry(f"test_{index}", "u55-256", {"cycles": round_ % 2, "latency_ms": index / 7},
                           {"compiler_version": "0.1.0"})
    bl.save_baseline(document)
    print("saved", round_, flush=True)
"""


def test_killed_writer_leaves_a_valid_baseline(tmp_path):
    path = tmp_path / "__npu__" / "test_big.json"
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "3000"], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    assert process.stdout.readline().startswith("saved")
    time.sleep(0.4)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    loaded = bl.load_baseline(path)
    assert len(loaded.tests) == 3000
    assert {entry["u55-256"]["metrics"]["cycles"] for entry in loaded.tests.values()} in ({0}, {1})
    assert path.read_text() == loaded.dumps()      # byte-identical to a clean write of what it holds
