"""Baseline writers: one killed with SIGKILL mid-write leaves the old or the new file, never half of
one; several writing one module's file at once (CI shards) keep every entry."""

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


SHARD = """
import sys
from pytest_npu.harness import baseline as bl
path, shard = sys.argv[1], int(sys.argv[2])
for index in range(40):                      # many small saves: maximal interleaving between shards
    document = bl.load_baseline(path, "tests/test_big.py")
    document.set_entry(f"test_{shard}_{index}", "u55-256", {"cycles": shard * 1000 + index}, {})
    bl.save_baseline(document)
"""


def test_concurrent_shards_keep_every_entry(tmp_path):
    path = tmp_path / "__npu__" / "test_big.json"
    shards = [subprocess.Popen([sys.executable, "-c", SHARD, str(path), str(shard)]) for shard in range(4)]
    assert [process.wait(timeout=120) for process in shards] == [0, 0, 0, 0]
    tests = bl.load_baseline(path).tests
    assert len(tests) == 160
    assert all(tests[f"test_{s}_{i}"]["u55-256"]["metrics"]["cycles"] == s * 1000 + i
               for s in range(4) for i in range(40))
