"""One table of statuses: the domain's. The client's result types, the Inspector, the
CLI and the dashboard agree with it, so a new status is added in one place."""

from __future__ import annotations

import typing

import durable_jobs as dj
from durable_jobs._domain.status import KIND_STATUSES, STATUSES
from durable_jobs._tools import args
from durable_jobs.cli import _render

CLIENT_STATUS_TYPES = {
    "continuous": dj.ContinuousStatus,
    "debounce": dj.DebounceStatus,
    "task": dj.TaskStatus,
}


def test_the_client_statuses_are_the_domain_statuses_of_a_live_instance() -> None:
    for kind, result_type in CLIENT_STATUS_TYPES.items():
        literal = typing.get_type_hints(result_type)["status"]
        live = set(KIND_STATUSES[kind]) - {"terminated"}
        assert set(typing.get_args(literal)) == live | {"not_found"}, kind


def test_the_inspector_filters_by_the_domain_statuses() -> None:
    assert args.STATUSES is STATUSES
    assert set(STATUSES) == {s for statuses in KIND_STATUSES.values() for s in statuses}


def test_the_cli_has_a_style_for_every_status() -> None:
    assert set(_render._STATUS_STYLE) == set(STATUSES)


async def test_a_live_instance_reports_a_status_of_its_kinds_row() -> None:
    registry = dj.Registry()

    @registry.task("t", event=int, state=int)
    async def execute(ctx: dj.TaskContext[int]) -> None:
        return None

    @execute.on_event
    async def on_event(event: int, ctx: dj.TaskContext[int]) -> None:
        return None

    async with dj.open_jobs(registry, "memory://", clock=dj.VirtualClock()) as jobs:
        client = jobs.task("t")
        await client.send("a", 1)
        status = await client.status("a")
    assert status.status in KIND_STATUSES["task"]
