"""A TaskMachine can test a task that writes with ``ctx.execute`` (an outside review:
each example's fresh store had no table for it, and every example failed "no such
table"): ``setup_store(url)`` prepares each fresh store before the jobs open it."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

import durable_jobs as dj
from durable_jobs.testing import FailurePlan
from durable_jobs.testing.machines import UNCHANGED, TaskMachine, TaskStep, TaskView

failures = FailurePlan()
registry = dj.Registry()


@registry.task("ledger", event=int, state=int)
async def ledger(ctx: dj.TaskContext[int]) -> None:
    failures.check(ctx, "execute")
    ctx.execute("INSERT INTO ledger_rows (account, amount) VALUES (?, 0)", (ctx.instance_id,))


@ledger.on_event
async def book(amount: int, ctx: dj.TaskContext[int]) -> None:
    failures.check(ctx, "on_event")
    ctx.execute(
        "INSERT INTO ledger_rows (account, amount) VALUES (?, ?)", (ctx.instance_id, amount)
    )
    ctx.update_state(lambda total: (total or 0) + amount)
    ctx.schedule(timedelta(seconds=3))


class LedgerMachine(TaskMachine):
    registry = registry
    job = ledger
    failures = failures
    store = "sqlite:///{tmp}/jobs.db"
    urls: list[str] = []
    rows: list[int] = []

    def setup_store(self, url: str) -> None:
        assert "{tmp}" not in url
        type(self).urls.append(url)
        self.db = url.removeprefix("sqlite:///")
        with sqlite3.connect(self.db) as db:
            db.execute("CREATE TABLE ledger_rows (account TEXT, amount INTEGER)")

    def teardown(self) -> None:
        with sqlite3.connect(self.db) as db:
            [(count,)] = db.execute("SELECT count(*) FROM ledger_rows")
        type(self).rows.append(count)
        super().teardown()

    def events(self) -> st.SearchStrategy[Any]:
        return st.integers(-3, 3)

    def model_on_event(self, event: int, view: TaskView) -> TaskStep:
        return TaskStep(state=(view.state or 0) + event, schedule=timedelta(seconds=3))

    def model_execute(self, view: TaskView) -> TaskStep:
        return TaskStep(state=UNCHANGED, schedule=UNCHANGED)


def test_setup_store_prepares_each_fresh_store_for_ctx_execute() -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=10,
            deadline=None,
            database=None,
            derandomize=True,
        ),
    )
    assert len(set(LedgerMachine.urls)) == len(LedgerMachine.urls) >= 15  # one per example
    assert any(LedgerMachine.rows), "the handlers' ctx.execute wrote rows"
