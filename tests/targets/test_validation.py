"""Every bad target file is refused with a message naming the file, the key and the fix.

The corpus in ``tests/fixtures_targets/bad`` is ``good.toml`` with one defect each; its header
says which (``# Defect:``) and what the message must contain (``# expect:`` lines).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_npu.errors import TargetError
from pytest_npu.targets import load, parse

CORPUS = Path(__file__).resolve().parent.parent / "fixtures_targets"
BAD_FILES = sorted((CORPUS / "bad").glob("*.toml"))


def expectations(path: Path) -> list[str]:
    header = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    return [line.removeprefix("# expect: ") for line in header if line.startswith("# expect: ")]


def test_good_fixture_loads_so_each_bad_file_fails_only_for_its_defect():
    target = load(CORPUS / "good.toml")
    assert target.name == "test-npu"
    assert target.macs_per_cycle == 128
    assert target.sram_bytes == 256 * 1024


def test_corpus_covers_every_documented_failure():
    assert len(BAD_FILES) >= 25
    assert all(expectations(path) for path in BAD_FILES), "every bad file states what it expects"


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_target_names_file_and_key(path: Path):
    with pytest.raises(TargetError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message
    for expected in expectations(path):
        assert expected in message


def test_all_problems_of_a_file_are_reported_at_once():
    text = (CORPUS / "good.toml").read_text()
    text = text.replace("cores = 1", "cores = 0").replace("dram_bytes_per_cycle = 1", "dram_bytes_per_cycle = 0")
    with pytest.raises(TargetError, match="2 problems") as info:
        parse(text, source="two-defects.toml")
    assert "cores: must be at least 1" in str(info.value)
    assert "memory.dram_bytes_per_cycle" in str(info.value)


def test_unknown_name_lists_the_builtins_and_suggests_one():
    with pytest.raises(TargetError) as info:
        load("u55-265")
    message = str(info.value)
    assert "did you mean 'u55-256'" in message
    for name in ("edge-3core", "u55-128", "u55-256", "u65-512"):
        assert name in message


@pytest.mark.parametrize("given", ["missing.toml", "dir/missing.toml"])
def test_missing_file_is_named(tmp_path, given):
    path = tmp_path / given
    with pytest.raises(TargetError, match="does not exist") as info:
        load(str(path))
    assert str(path) in str(info.value)


def test_directory_is_refused(tmp_path):
    with pytest.raises(TargetError, match="is a directory"):
        load(tmp_path)


def test_non_target_argument_is_refused():
    with pytest.raises(TargetError, match="built-in name or a .toml path"):
        load(42)  # type: ignore[arg-type]


def test_any_path_like_and_a_target_are_accepted():
    class PathLike:
        def __fspath__(self) -> str:
            return str(CORPUS / "good.toml")

    target = load(PathLike())
    assert target.name == "test-npu"
    assert load(target) is target
