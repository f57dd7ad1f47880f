"""The public API is typed for users: mypy infers states and catches a wrong ctx type."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

from test_docs import python_blocks

PROGRAM = """
from datetime import timedelta
import durable_jobs as dj

registry = dj.Registry()

@registry.continuous("beat", state=int, schedule=dj.every(timedelta(seconds=1)))
async def beat(ctx: dj.ContinuousContext[int]) -> None:
    ctx.set_state(ctx.state + 1)

@registry.task("ping", event=str, state=int)
async def ping(ctx: dj.TaskContext[int]) -> None:
    reveal_type(ctx.state)

@registry.debounce("digest", event=int, flush_after=timedelta(seconds=1))
async def digest(ctx: dj.DebounceContext[int]) -> None: ...

async def use(jobs: dj.Jobs) -> None:
    reveal_type(await jobs.continuous(beat).get_state("x"))
    reveal_type(await jobs.task(ping).get_state("x"))
    reveal_type(await jobs.debounce(digest).add("x", 1))

@registry.continuous("wrong", state=int, schedule=dj.every(timedelta(seconds=1)))
async def wrong(ctx: dj.ContinuousContext[str]) -> None: ...
"""


@pytest.mark.slow
def test_mypy_infers_types_and_rejects_a_wrong_context(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    out, err, status = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(program)]
    )
    assert status == 1, out + err
    lines = [line.split(": ", 1)[1] for line in out.splitlines()]
    # Compare loosely: mypy versions print builtins with or without their module.
    shown = [
        line.replace("builtins.", "").replace("durable_jobs._clients.results.", "")
        for line in lines
    ]
    assert shown[:4] == [
        'note: Revealed type is "int | None"',
        'note: Revealed type is "int | None"',
        'note: Revealed type is "TaskState[int] | None"',
        'note: Revealed type is "AddResult"',
    ]
    assert len(shown) == 5
    assert shown[4].startswith("error: Argument 1 has incompatible type")
    assert "ContinuousContext[str]" in shown[4]
    assert "ContinuousContext[int]" in shown[4]


HANDLERS = """
from datetime import timedelta
from pydantic import BaseModel
import durable_jobs as dj
from durable_jobs.testing import strategies as djst

class Note(BaseModel):
    text: str

class Digest(BaseModel):
    notes: list[str] = []

class Trial(BaseModel):
    days: int = 14

registry = dj.Registry()

@registry.debounce("digest", event=Note, state=Digest, flush_after=timedelta(minutes=5))
async def digest(ctx: dj.DebounceContext[Digest]) -> None: ...

@digest.on_event
def fold(ctx: dj.DebounceEventContext[Note, Digest]) -> Digest:
    return Digest(notes=[*(ctx.state.notes if ctx.state else []), ctx.event.text])

@registry.debounce("digest2", event=Note, state=Digest, flush_after=timedelta(minutes=5))
async def digest2(ctx: dj.DebounceContext[Digest]) -> None: ...

@digest2.on_event
async def afold(ctx: dj.DebounceEventContext[Note, Digest]) -> Digest:
    return Digest()

@registry.debounce("bad1", event=Note, state=Digest, flush_after=timedelta(minutes=5))
async def bad1(ctx: dj.DebounceContext[Digest]) -> None: ...

@bad1.on_event  # E: the reducer returns an int, not a Digest
def bad1_fold(ctx: dj.DebounceEventContext[Note, Digest]) -> int:
    return 1

@registry.debounce("bad2", event=Note, state=Digest, flush_after=timedelta(minutes=5))
async def bad2(ctx: dj.DebounceContext[Digest]) -> None: ...

@bad2.on_event  # E: the context's event type is str, not Note
def bad2_fold(ctx: dj.DebounceEventContext[str, Digest]) -> Digest:
    return Digest()

@registry.task("trial", event=Note, state=Trial)
async def trial(ctx: dj.TaskContext[Trial]) -> None: ...

@trial.on_event
async def trial_on(event: Note, ctx: dj.TaskContext[Trial]) -> None: ...

@trial.on_idle
async def trial_idle(ctx: dj.TaskContext[Trial]) -> None: ...

@trial.on_error
async def trial_err(error: Exception, ctx: dj.TaskContext[Trial]) -> None: ...

@registry.task("bad3", event=Note, state=Trial)
async def bad3(ctx: dj.TaskContext[Trial]) -> None: ...

@bad3.on_event  # E: the event is a Note, not a Digest
async def bad3_on(event: Digest, ctx: dj.TaskContext[Trial]) -> None: ...

@bad3.on_idle  # E: the state is a Trial
async def bad3_idle(ctx: dj.TaskContext[Digest]) -> None: ...

@bad3.on_error  # E: on_error takes (error, ctx)
async def bad3_err(ctx: dj.TaskContext[Trial]) -> None: ...

@bad3.on_event  # E: the handler must be async
def bad3_sync(event: Note, ctx: dj.TaskContext[Trial]) -> None: ...

reveal_type(djst.events_for(digest))
reveal_type(djst.events_for(trial))
reveal_type(djst.states_for(digest))
reveal_type(djst.states_for(trial))
"""


@pytest.mark.slow
def test_mypy_checks_the_added_handlers_against_the_job_types(tmp_path: Path) -> None:
    """.on_event, .on_idle and .on_error are typed with the job's event and state types
    (what a wrong handler does at runtime: a wrong type is never caught there); the
    strategies give values of those types."""
    program = tmp_path / "program.py"
    program.write_text(HANDLERS)
    out, err, status = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(program)]
    )
    assert status == 1, out + err
    wanted = {i for i, line in enumerate(HANDLERS.splitlines(), 1) if "  # E:" in line}
    errors = {int(line.split(":")[1]) for line in out.splitlines() if ": error: " in line}
    assert errors == wanted, out
    notes = [line.split("Revealed type is ")[1] for line in out.splitlines() if ": note: " in line]
    shown = [n.replace("hypothesis.strategies._internal.strategies.", "") for n in notes]
    assert shown == [
        '"SearchStrategy[program.Note]"',
        '"SearchStrategy[program.Note]"',
        '"SearchStrategy[program.Digest]"',
        '"SearchStrategy[program.Trial]"',
    ], out


@pytest.mark.slow
def test_the_guide_testing_and_readme_examples_pass_mypy_strict(tmp_path: Path) -> None:
    """The examples an app copies type-check as they are (they also run, in
    test_docs.py and test_testing_docs.py): the guide once showed state=Any, whose
    client mypy reads as refusing every value (the Any class), and untyped dicts."""
    root = Path(__file__).resolve().parents[1]
    files = []
    for page in (root / "docs" / "guide.md", root / "docs" / "testing.md", root / "README.md"):
        for line, source in python_blocks(page):
            path = tmp_path / f"{page.stem.lower()}_{line}.py"
            path.write_text(source, encoding="utf-8")
            files.append(str(path))
    assert len(files) >= 20
    out, err, status = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", *files]
    )
    assert status == 0, out + err
