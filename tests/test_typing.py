"""The public API is typed for users: mypy infers states and catches a wrong ctx type."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

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
