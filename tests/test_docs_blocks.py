"""Every code block in docs/ is checked by a test: run, type-checked, parsed, or generated.

The rules, block by block (a block's kind is its fence's language):

- ``python`` blocks run as complete programs (``python snippet.py`` in an empty
  temporary directory). Those of ``guide.md`` and ``testing.md`` run in
  ``test_docs.py`` and ``test_testing_docs.py``; this file runs the others.
- A block right after ``<!-- docs-check: own-process -->`` changes process-wide
  state (OpenTelemetry's global providers, logging handlers): it runs as
  ``python snippet.py`` in a fresh interpreter.
- A block right after ``<!-- docs-check: mypy -->`` cannot run on its own (it
  serves forever, say): it is type-checked with ``mypy --strict`` instead.
- A block right after ``<!-- docs-check: sql (tests/FILE.py runs it) -->`` is SQL that
  test file runs (the file must exist).
- A block right after ``<!-- docs-check: not-ours (reason) -->`` is another
  library's code shown for comparison (durable-effect's TypeScript, APScheduler):
  it is counted, and must say why.
- ``docs/debugging.md`` is written whole by ``scripts/debugging_doc.py`` from real
  runs; ``test_debugging_doc.py`` checks it is current.
- ``text`` blocks in ``guide.md`` are handler signatures: the parameter names
  they show must be the real ones.
- ``json`` and ``toml`` blocks must parse; ``sh`` blocks must pass ``bash -n``.

Any other block fails :func:`test_every_block_is_checked`.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import runpy
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import durable_jobs as dj

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!-- docs-check: (\S+)((?:(?!-->).)*?)-->\s*\Z", re.DOTALL)

RUN_ELSEWHERE = {"guide.md": "test_docs.py", "testing.md": "test_testing_docs.py"}
GENERATED = {"debugging.md": "test_debugging_doc.py"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    marker: str | None
    reason: str
    source: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip() + "\n"
        marker = MARKER.search(before.rstrip())
        found.append(
            Block(
                page=path.name,
                line=text.count("\n", 0, m.start()) + 1,
                lang=m.group(1),
                marker=marker.group(1) if marker else None,
                reason=marker.group(2).strip() if marker else "",
                source=m.group(2),
            )
        )
    return found


ALL = [block for path in sorted(DOCS.glob("*.md")) for block in blocks_of(path)]


def how_checked(block: Block) -> str | None:
    """What checks ``block`` (a short label), or None if nothing does."""
    if block.page in GENERATED:
        return f"generated ({GENERATED[block.page]})"
    if block.marker == "not-ours":
        return "not ours" if block.reason else None
    if block.marker == "mypy":
        return "mypy" if block.lang == "python" else None
    if block.marker == "own-process":
        return "run (own process)" if block.lang == "python" else None
    if block.marker == "sql":
        # SQL a test runs: the marker names the test file, which must exist.
        where = block.reason.strip().strip("()").removesuffix(" runs it")
        ok = block.lang == "sql" and (ROOT / where).is_file()
        return f"run ({where})" if ok else None
    if block.marker is not None:
        return None
    if block.lang == "python":
        return f"run ({RUN_ELSEWHERE.get(block.page, 'here')})"
    if block.lang == "text" and block.page == "guide.md":
        return "signature"
    if block.lang in ("json", "toml", "sh"):
        return f"parsed ({block.lang})"
    return None


def test_every_block_is_checked() -> None:
    unchecked = [f"{b.id} ```{b.lang}" for b in ALL if how_checked(b) is None]
    assert not unchecked, (
        "code blocks no test checks (run them, mark them <!-- docs-check: mypy --> "
        f"or <!-- docs-check: not-ours (why) -->): {unchecked}"
    )
    counts: dict[str, int] = {}
    for block in ALL:
        label = str(how_checked(block)).split(" ")[0]
        counts[label] = counts.get(label, 0) + 1
    assert counts["run"] >= 25 and counts["mypy"] >= 1, counts


def test_every_page_is_on_the_site() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [p.name for p in DOCS.glob("*.md") if f": {p.name}" not in nav]
    assert not missing, f"add these pages to the nav in mkdocs.yml: {missing}"


RUN_HERE = [
    pytest.param(b, id=b.id)
    for b in ALL
    if how_checked(b) == "run (here)"  # the others run in their own test files
]


@pytest.mark.parametrize("block", RUN_HERE)
def test_python_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(block.source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")


@pytest.mark.parametrize(
    "block", [pytest.param(b, id=b.id) for b in ALL if how_checked(b) == "run (own process)"]
)
def test_python_block_runs_in_its_own_process(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(block.source, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr


def test_marked_python_blocks_type_check(tmp_path: Path) -> None:
    marked = [b for b in ALL if b.marker == "mypy"]
    assert marked
    files = []
    for n, block in enumerate(marked):
        file = tmp_path / f"block_{n}.py"
        file.write_text(block.source, encoding="utf-8")
        files.append(str(file))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file=", *files],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    where = {f: b.id for f, b in zip(files, marked, strict=True)}
    report = done.stdout
    for path, label in where.items():
        report = report.replace(path, label)
    assert done.returncode == 0, report


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=b.id) for b in ALL if (how_checked(b) or "").startswith("parsed")],
)
def test_data_and_shell_blocks_parse(block: Block) -> None:
    if block.lang == "json":
        for line in block.source.splitlines():
            json.loads(line)
    elif block.lang == "toml":
        tomllib.loads(block.source)
    else:
        done = subprocess.run(
            ["bash", "-n"], input=block.source, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr


# ---- signatures shown as text ----------------------------------------------------------

_TARGETS: dict[str, Callable[..., object]] = {
    "registry.continuous": dj.Registry.continuous,
    "registry.debounce": dj.Registry.debounce,
    "registry.task": dj.Registry.task,
    "dj.Retry": dj.Retry,
}


def shown_parameters(call_text: str) -> list[str]:
    """The parameter names of a signature shown as ``name(a, *, b, c=1)``."""
    inner = call_text[call_text.index("(") + 1 : call_text.rindex(")")]
    tree = ast.parse(f"def f({inner}): pass")  # a signature is a valid parameter list
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    return [a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)]


def first_call(source: str) -> str | None:
    """The text of the first top-level call in ``source`` (up to its closing parenthesis)."""
    start = source.find("(")
    if start < 0:
        return None
    depth = 0
    for i in range(start, len(source)):
        depth += {"(": 1, ")": -1}.get(source[i], 0)
        if depth == 0:
            return source[: i + 1].lstrip("@").strip()
    return None


SIGNATURES = [b for b in ALL if how_checked(b) == "signature"]


def test_the_guide_shows_signatures() -> None:
    assert len(SIGNATURES) >= 4


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in SIGNATURES])
def test_signature_block_names_the_real_parameters(block: Block) -> None:
    call = first_call(block.source)
    assert call is not None
    target = _TARGETS[call[: call.index("(")]]
    real = [
        name
        for name, p in inspect.signature(target).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    shown = shown_parameters(call)
    assert set(shown) <= set(real), f"not parameters of {call[:30]}: {set(shown) - set(real)}"
    required = [
        name
        for name, p in inspect.signature(target).parameters.items()
        if name != "self" and p.default is p.empty and p.kind is not p.VAR_KEYWORD
    ]
    assert set(required) <= set(shown), f"required but not shown: {set(required) - set(shown)}"


def test_the_readme_links_to_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", readme)
    assert len(targets) >= 15
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, missing
