"""Every code block in README.md and docs/**/*.md runs, so the guide cannot drift from the code.

Rules (the README's "User guide" section states them for readers):

* A ```` ```python ```` block runs with ``exec``. Blocks of one file share one namespace and one
  temporary working directory, in document order, like a notebook: a later block may use names
  and files an earlier one made.
* A ```` ```python ```` block containing ``def test_`` is a pytest test file: it is written into
  the same directory and run with ``pytester``; every test in it must pass. A first-line comment
  ``# run: pytest ARGS`` gives the command-line options it is documented with; without one it runs
  on budgets alone (``--npu-no-baseline``), since a baseline needs a recorded first run.
* A ```` ```bash ```` block whose first command starts with ``pytest-npu `` runs every command
  through :func:`pytest_npu.cli.main` (each must be a ``pytest-npu`` command and exit 0).
* A ```` ```bash ```` block whose first command is ``pytest`` runs each command with
  ``pytester.runpytest`` in that directory; it must exit 0 unless the line ends with a comment
  ``# exits N`` (a documented failure, e.g. a regression the page shows being caught).
* A block with the flag ``file=NAME`` (any language, e.g. ```` ```toml file=my-npu.toml ````) is
  written to ``NAME`` in that directory instead of being executed, so the file a reader sees is
  the file the later blocks load. A ``file=test_*.py`` block is also run when its first line is
  a ``# run: pytest ARGS`` comment (otherwise a later ``pytest`` block runs it).
* A ```` ```text output ```` block right after a python or ``pytest-npu`` block is what that
  block prints: the printed text must match it, with ``...`` standing for any text (doctest's
  ELLIPSIS) and runs of whitespace compared as one. Output that varies between runs (wall-clock
  times) goes in a plain ```` ```text ```` block, which is shown, not checked.
* ```` ```python no-run ```` skips a block that truly cannot run here (the text beside it says why).
  Other languages (``text``, ``toml``, ``yaml``, ``console``) are shown, not run.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pytest puts tests/ first on sys.path to import this file; there the test directory
# tests/reference_models would be taken for the package of that name (as a namespace package) by
# an editable install, which has no sys.path entry of its own. The snippets import the real one.
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))
FENCE = re.compile(r"^(?P<indent> {0,3})```(?P<info>[^`]*)$")
TEST_FUNCTION = re.compile(r"^\s*(async\s+)?def test_", re.M)
RUN_ARGS = re.compile(r"^#\s*run:\s*pytest\b(?P<args>.*)$")
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
EXPECTED_EXIT = re.compile(r"#\s*exits\s+(?P<code>\d+)\b")
SHELL_COMMANDS = ("pytest-npu", "pytest")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts (1-based line of the fence), its language and flags."""

    path: Path
    line: int
    lang: str
    flags: tuple[str, ...]
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def file(self) -> str | None:
        """The NAME of a ``file=NAME`` flag, if any."""
        names = [flag.split("=", 1)[1] for flag in self.flags if flag.startswith("file=")]
        return names[0] if names else None

    @property
    def is_test_file(self) -> bool:
        return bool(TEST_FUNCTION.search(self.code))

    @property
    def run_args(self) -> list[str] | None:
        """Options of a first-line ``# run: pytest ARGS`` comment, if there is one."""
        lines = self.code.lstrip().splitlines()
        match = RUN_ARGS.match(lines[0]) if lines else None
        return shlex.split(match["args"]) if match else None

    @property
    def shell(self) -> str | None:
        """"pytest-npu" or "pytest" when a bash block runs those; None for other shell code."""
        if self.lang != "bash":
            return None
        commands = _commands(self.code)
        first = commands[0][0] if commands else None
        return first if first in SHELL_COMMANDS else None


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def extract_blocks(path: Path) -> list[Block]:
    """Fenced blocks of a Markdown file (indented up to three spaces, e.g. inside a list item)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    opened: tuple[int, str, str] | None = None
    body: list[str] = []
    for number, line in enumerate(lines, start=1):
        match = FENCE.match(line)
        if opened is None:
            if match:
                opened, body = (number, match["indent"], match["info"].strip()), []
            continue
        if match and not match["info"].strip():
            start, indent, info = opened
            words = info.split()
            code = "\n".join(row[len(indent):] if row.startswith(indent) else row for row in body)
            blocks.append(Block(path, start, words[0] if words else "", tuple(words[1:]), code + "\n"))
            opened = None
        else:
            body.append(line)
    if opened is not None:
        raise AssertionError(f"{path.relative_to(ROOT)}:{opened[0]}: code fence never closed")
    return blocks


def _command_lines(code: str) -> list[tuple[list[str], int]]:
    """(words, expected exit status) of each shell command (continuations joined, comments dropped)."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            expected = EXPECTED_EXIT.search(line)
            commands.append((words, int(expected["code"]) if expected else 0))
    return commands


def _commands(code: str) -> list[list[str]]:
    return [words for words, _ in _command_lines(code)]


def _runnable(block: Block) -> bool:
    if "no-run" in block.flags:
        return False
    return block.file is not None or block.lang == "python" or block.shell is not None


DOCS = [path for path in doc_files() if any(_runnable(b) for b in extract_blocks(path))]


def _run_python(block: Block, namespace: dict) -> str:
    """Execute the block; return what it printed."""
    code = compile(block.code, block.where, "exec")
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(code, namespace)
    except Exception as exc:
        exc.add_note(f"raised by the python block at {block.where}")
        raise
    return printed.getvalue()


OUTPUT_CHECKER = doctest.OutputChecker()
OUTPUT_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _check_output(block: Block, shown: Block, printed: str) -> None:
    """The ``text output`` block after ``block`` must match what ``block`` printed."""
    if not OUTPUT_CHECKER.check_output(shown.code, printed, OUTPUT_FLAGS):
        pytest.fail(f"{shown.where}: the output shown for the block at {block.where} is not what it prints "
                    f"(update the page).\nshown:\n{shown.code}\nprinted:\n{printed}", pytrace=False)


def _write_file(block: Block, directory: Path) -> Path:
    path = directory / block.file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block.code, encoding="utf-8")
    return path


def _run_test_file(block: Block, pytester: pytest.Pytester, path: Path | None = None) -> None:
    args = block.run_args if block.run_args is not None else ["--npu-no-baseline"]
    if path is None:
        name = f"test_doc_{block.path.stem.replace('-', '_')}_l{block.line}"
        path = pytester.makepyfile(**{name: block.code})
    result = pytester.runpytest(str(path), "-p", "no:cacheprovider", "-q", *args)
    outcomes = result.parseoutcomes()
    if result.ret != 0 or not outcomes.get("passed"):
        pytest.fail(f"the test file at {block.where} did not pass (exit {result.ret}, {outcomes}):\n"
                    + result.stdout.str(), pytrace=False)


def _run_shell(block: Block, pytester: pytest.Pytester) -> str:
    """Run the block's commands; return what pytest-npu commands printed."""
    from pytest_npu.cli import main

    printed = []
    for words, expected in _command_lines(block.code):
        command = shlex.join(words)
        if words[0] != block.shell:
            pytest.fail(f"{block.where}: a {block.shell} block may hold only {block.shell} commands, got "
                        f"{command!r}; put other commands in their own block", pytrace=False)
        if words[0] == "pytest":
            result = pytester.runpytest(*words[1:])
            code, output = int(result.ret), result.stdout.str() + result.stderr.str()
        else:
            if expected != 0:
                pytest.fail(f"{block.where}: `{command}` is documented to fail; pytest-npu examples "
                            "must exit 0", pytrace=False)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(words[1:])
            output = out.getvalue() + err.getvalue()
            printed.append(out.getvalue())
        if code != expected:
            pytest.fail(f"{block.where}: `{command}` exited {code}, the page says {expected}:\n{output}",
                        pytrace=False)
    return "".join(printed)


@pytest.fixture(scope="session")
def warm_imports() -> None:
    """Import the heavy libraries before pytester snapshots ``sys.modules``.

    pytester drops every module first imported during a test (and during each in-process run), and
    torch cannot be imported twice in one process; modules loaded here survive both snapshots.
    """
    import importlib
    import pkgutil

    import pytest_npu
    import reference_models

    for name in ("torch", "torch.onnx", "torch.nn.utils.prune", "onnx", "onnx.reference", "onnxruntime",
                 "onnxruntime.quantization", "onnxruntime.quantization.calibrate", "hypothesis", "hypothesis.extra.numpy", "sklearn.datasets",
                 "sklearn.model_selection", "tabulate"):
        importlib.import_module(name)
    from torch import nn

    from pytest_npu import compress

    # the exporter imports much of torch lazily (dynamo, onnxscript): load it all once, here
    compress.to_onnx(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), input_shape=(4,))
    for package in (pytest_npu, reference_models):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name.endswith("__main__") or ".train_" in module.name or ".report_" in module.name:
                continue   # scripts: importing them runs them
            with contextlib.suppress(ImportError):   # a subcommand a colleague has not landed yet
                importlib.import_module(module.name)


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_code_blocks_run(doc: Path, warm_imports: None, pytester: pytest.Pytester,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the file's blocks in order in one temporary directory (pytester's, already the cwd), on a
    100-column terminal: tables fit the terminal, so the pages show what that width prints."""
    monkeypatch.setenv("COLUMNS", "100")
    namespace: dict = {"__name__": "__docs__"}
    blocks = extract_blocks(doc)
    for position, block in enumerate(blocks):
        if not _runnable(block):
            continue
        printed = None
        if block.file is not None:
            path = _write_file(block, pytester.path)
            if block.is_test_file and path.name.startswith("test_") and block.run_args is not None:
                _run_test_file(block, pytester, path)
        elif block.shell is not None:
            output = _run_shell(block, pytester)
            printed = output if block.shell == "pytest-npu" else None   # pytest runs print timings
        elif block.is_test_file:
            _run_test_file(block, pytester)
        else:
            printed = _run_python(block, namespace)
        shown = blocks[position + 1] if position + 1 < len(blocks) else None
        if shown is not None and shown.lang == "text" and "output" in shown.flags:
            if printed is None:
                pytest.fail(f"{shown.where}: a checked output block must follow a python or pytest-npu block",
                            pytrace=False)
            _check_output(block, shown, printed)


@pytest.mark.parametrize("doc", doc_files(), ids=[str(p.relative_to(ROOT)) for p in doc_files()])
def test_relative_links_resolve(doc: Path) -> None:
    """A link to another file of the repository points at a file that exists."""
    broken = []
    for match in LINK.finditer(doc.read_text(encoding="utf-8")):
        target = match["target"].split("#", 1)[0]
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        if not (doc.parent / target).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files: {broken}"


def test_no_run_blocks_say_why() -> None:
    """A skipped block must be explained in the two lines above it or in its first comment."""
    unexplained = []
    for doc in doc_files():
        lines = doc.read_text(encoding="utf-8").splitlines()
        for block in extract_blocks(doc):
            if "no-run" not in block.flags:
                continue
            context = " ".join(lines[max(0, block.line - 3):block.line - 1]) + block.code.split("\n", 1)[0]
            if not re.search(r"\b(because|needs|requires|cannot|can't|not run)\b", context, re.I):
                unexplained.append(block.where)
    assert not unexplained, f"no-run blocks without a reason next to them: {unexplained}"


def test_readme_opens_with_the_two_fresh_machine_commands() -> None:
    """The README opens with `make demo` / `make test` (set up and run the case study, the tests),
    and its next block adds pytest-npu to a user's own project with pip."""
    blocks = [b for b in extract_blocks(ROOT / "README.md") if b.lang == "bash"]
    assert [words[:2] for words in _commands(blocks[0].code)] == [["make", "demo"], ["make", "test"]]
    second = [words[:2] for words in _commands(blocks[1].code)]
    assert second[:2] == [["pip", "install"], ["pip", "install"]] and "pytest-npu" in blocks[1].code


def test_extractor_reads_fences_flags_and_test_files(tmp_path: Path) -> None:
    """The extractor itself: languages, flags, indented fences, test-file and CLI detection."""
    sample = tmp_path / "sample.md"
    sample.write_text("text\n```python\nx = 1\n```\n\n1. item\n   ```python no-run\n   y = 2\n   ```\n"
                      "```python\ndef test_x():\n    pass\n```\n```bash\npytest-npu targets  # list\n```\n"
                      "```bash\nmake demo\n```\n```toml file=a.toml\nk = 1\n```\n"
                      "```bash\npytest t.py -q  # exits 1\n```\n", encoding="utf-8")
    blocks = extract_blocks(sample)
    assert [(b.line, b.lang, b.flags) for b in blocks] == [
        (2, "python", ()), (7, "python", ("no-run",)), (10, "python", ()), (14, "bash", ()), (17, "bash", ()),
        (20, "toml", ("file=a.toml",)), (23, "bash", ())]
    assert blocks[1].code == "y = 2\n"
    assert [b.is_test_file for b in blocks[:3]] == [False, False, True]
    assert [_runnable(b) for b in blocks] == [True, False, True, True, False, True, True]
    assert blocks[5].file == "a.toml" and blocks[0].file is None
    assert [b.shell for b in blocks[3:]] == ["pytest-npu", None, None, "pytest"]
    assert _command_lines(blocks[3].code) == [(["pytest-npu", "targets"], 0)]
    assert _command_lines(blocks[6].code) == [(["pytest", "t.py", "-q"], 1)]


def test_output_check_allows_ellipsis_and_catches_drift() -> None:
    """A shown output matches with ``...`` elisions and loose whitespace, and fails when a figure moves."""
    block = Block(ROOT / "page.md", 1, "python", (), "print(...)\n")
    shown = Block(ROOT / "page.md", 5, "text", ("output",), "cycles  7703\n...\nefficiency 82%\n")
    _check_output(block, shown, "cycles 7703\nroofline 6354\nefficiency   82%\n")
    with pytest.raises(pytest.fail.Exception, match="is not what it prints"):
        _check_output(block, shown, "cycles 8599\nroofline 6354\nefficiency 74%\n")
