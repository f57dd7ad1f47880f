"""An index row that cannot be read (edited by hand, or by a faulty tool).

The runtime refuses such a store, naming the row; the read-only tools (the
CLI's list, alarms, stats and replay, the Inspector, the dashboard) list what
they can, name each row they left out, and exit 1; ``doctor`` finds them; an
export stops at one, naming it.
"""

from __future__ import annotations

import re
import sqlite3
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio

import durable_jobs as dj
from _cli_fixtures import invoke
from _ui_fixtures import dashboard
from durable_jobs.adapters import rows_from

pytestmark = pytest.mark.filterwarnings("error")

IDS = [f"i{n}" for n in range(7)]


def _registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous("tick", state=int, schedule=dj.every(timedelta(hours=1)))
    async def tick(ctx: dj.ContinuousContext[int]) -> None:
        pass

    return registry


def _fill(url: str, ids: list[str] = IDS) -> None:
    store = dj.open_store(url)

    async def main() -> None:
        async with dj.open_jobs(_registry(), store) as jobs:
            for instance_id in ids:
                await jobs.continuous("tick").start(instance_id, 0)

    try:
        trio.run(main)
    finally:
        store.close()


def _corrupt_sqlite(path: Path, instance_id: str, column: str, value: Any) -> None:
    with sqlite3.connect(path) as conn:
        # ``column`` is one of the index's own column names, from this test.
        conn.execute(
            f"UPDATE dj_instances SET {column} = ? WHERE instance_id = ?",
            (value, instance_id),
        )


@pytest.fixture
def sqlite_store(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    _fill(url)
    _corrupt_sqlite(path, "i1", "due_at", "garbage")
    return url, path


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("due_at", "garbage"),
        ("due_at", 1e300),
        ("updated_at", "yesterday"),
        ("version", "three"),
        ("instance_uuid", "not-a-uuid"),
    ],
)
def test_a_read_names_the_instance_and_the_column(tmp_path: Path, column: str, value: Any) -> None:
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    _fill(url, ["a", "b"])
    _corrupt_sqlite(path, "b", column, value)
    store = dj.open_store(url)
    try:
        with pytest.raises(dj.StoreError) as caught:
            store.list_instances()
        message = str(caught.value)
        assert "continuous job 'tick' instance 'b'" in message
        assert f"its {column} is {value!r:.60}" in message
        # Told of it instead: the other row is read.
        skipped: list[dj.StoreError] = []
        rows = store.list_instances(unreadable=skipped.append)
        assert [r.instance_id for r in rows] == ["a"]
        assert [str(e) for e in skipped] == [message]
    finally:
        store.close()


def test_the_runtime_refuses_the_store_naming_the_row(sqlite_store: tuple[str, Path]) -> None:
    url, _ = sqlite_store

    store = dj.open_store(url)

    async def main() -> None:
        async with dj.open_jobs(_registry(), store):
            pass  # pragma: no cover - the runtime does not start

    try:
        with pytest.raises(dj.StoreError, match=r"instance 'i1'.*its due_at is 'garbage'"):
            trio.run(main)
    finally:
        store.close()


@pytest.mark.parametrize("command", [["list"], ["alarms"], ["stats"], ["replay", "--all"]])
def test_the_read_only_commands_list_the_rest_and_exit_1(
    capsys: pytest.CaptureFixture[str], sqlite_store: tuple[str, Path], command: list[str]
) -> None:
    url, _ = sqlite_store
    code, out, err = invoke(capsys, "--store", url, *command)
    assert code == 1
    assert err.count("error: The index row of continuous job 'tick' instance 'i1'") == 1
    assert "its due_at is 'garbage'" in err
    if command[0] == "stats":
        assert re.search(r"continuous\s+tick\s+6\s", out), out
    else:
        for instance_id in IDS:
            assert (f" {instance_id} " in out) == (instance_id != "i1"), (instance_id, out)


def test_replay_json_counts_the_row_as_a_problem(
    capsys: pytest.CaptureFixture[str], sqlite_store: tuple[str, Path]
) -> None:
    url, _ = sqlite_store
    code, out, _ = invoke(capsys, "--store", url, "replay", "--all", "--json")
    assert code == 1
    assert '"ok": false' in out
    assert '"checked": 6' in out
    assert "instance 'i1'" in out


def test_doctor_names_every_unreadable_row(
    capsys: pytest.CaptureFixture[str], sqlite_store: tuple[str, Path]
) -> None:
    url, path = sqlite_store
    code, out, _ = invoke(capsys, "--store", url, "doctor")
    assert code == 1
    assert out.splitlines()[-1] == "not ok"
    assert "problem         The index row of continuous job 'tick' instance 'i1'" in out
    _corrupt_sqlite(path, "i1", "due_at", 1.5)
    code, out, _ = invoke(capsys, "--store", url, "doctor")
    assert (code, out.splitlines()[-1]) == (0, "ok")


def test_an_export_stops_at_the_row_naming_it(
    capsys: pytest.CaptureFixture[str], sqlite_store: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = sqlite_store
    code, _, err = invoke(capsys, "--store", url, "export", "-o", str(tmp_path / "out.jsonl"))
    assert code == 1
    assert "instance 'i1'" in err
    assert "its due_at is 'garbage'" in err


def test_inspector_pages_skip_unreadable_rows_once(tmp_path: Path) -> None:
    """Unreadable rows at the ends of pages: each good row is listed once, each bad
    one reported once, and the cursor moves past both."""
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    _fill(url)
    for instance_id in ("i0", "i1", "i3", "i6"):
        _corrupt_sqlite(path, instance_id, "updated_at", "never")
    inspector = dj.Inspector(url)
    try:
        for limit in (1, 2, 3, 10):
            skipped: list[dj.StoreError] = []
            seen = [
                s.instance_id for s in _pages(inspector, limit=limit, unreadable=skipped.append)
            ]
            assert seen == ["i2", "i4", "i5"], limit
            named = sorted(str(e).split("instance '")[1][:2] for e in skipped)
            assert named == ["i0", "i1", "i3", "i6"], limit
        with pytest.raises(dj.StoreError, match="instance 'i0'"):
            inspector.instances()
    finally:
        inspector.close()


def _pages(inspector: dj.Inspector, *, limit: int, unreadable: Any) -> list[Any]:
    found: list[Any] = []
    cursor: str | None = None
    while True:
        page = inspector.instances(cursor=cursor, limit=limit, unreadable=unreadable)
        found += page.items
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def test_store_iteration_crosses_pages_of_unreadable_rows(tmp_path: Path) -> None:
    """``iter_instances`` reads 500 rows a page: a whole page of unreadable rows
    does not end it early."""
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    _fill(url, ["a"])
    with sqlite3.connect(path) as conn:
        (row,) = conn.execute("SELECT * FROM dj_instances").fetchall()
        names = [d[0] for d in conn.execute("SELECT * FROM dj_instances").description]
        copies = []
        for n in range(1200):
            values = dict(zip(names, row, strict=True))
            values["instance_uuid"] = f"{n:032x}"
            values["instance_id"] = f"x{n:04d}"
            values["due_at"] = "garbage" if 300 <= n < 1000 else values["due_at"]
            copies.append(tuple(values.values()))
        marks = ", ".join("?" * len(names))
        conn.executemany(f"INSERT INTO dj_instances VALUES ({marks})", copies)
    store = dj.open_store(url)
    try:
        skipped: list[dj.StoreError] = []
        ids = [r.instance_id for r in store.iter_instances(unreadable=skipped.append)]
        assert ids == ["a"] + [f"x{n:04d}" for n in range(1200) if not 300 <= n < 1000]
        assert len(skipped) == 700
        assert len({str(e) for e in skipped}) == 700
    finally:
        store.close()


def test_postgres_rows_that_cannot_be_read(
    capsys: pytest.CaptureFixture[str], pg_url: str, postgres_url: str, pg_schema: str
) -> None:
    _fill(pg_url, ["a", "b", "c"])
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_schema}.dj_instances SET due_at = 'NaN' WHERE instance_id = 'b'")
        conn.execute(
            f"UPDATE {pg_schema}.dj_instances SET updated_at = 1e300 WHERE instance_id = 'c'"
        )
    code, out, err = invoke(capsys, "--store", pg_url, "list")
    assert code == 1
    assert " a " in out
    assert " b " not in out
    assert " c " not in out
    assert "instance 'b'" in err
    assert "its due_at is nan" in err
    assert "its updated_at is 1e+300" in err
    code, out, _ = invoke(capsys, "--store", pg_url, "doctor")
    assert code == 1
    assert out.count("problem         The index row of") == 2


def test_rows_from_reads_good_rows_as_before() -> None:
    uuid = "7d3d96c75c4956bcaf00531abe14d4a4"
    (row,) = rows_from([(uuid, "task", "t", "x", "active", 10.0, 3, 20.0)])
    assert (row.instance_uuid.hex, row.due_at, row.version) == (uuid, row.due_at, 3)
    assert row.due_at is not None
    assert row.due_at.timestamp() == 10.0
    assert rows_from([]) == []


def test_the_dashboard_lists_the_rest_and_names_the_row(
    sqlite_store: tuple[str, Path],
) -> None:
    url, _ = sqlite_store
    with dashboard(url) as served:
        for page in ("/", "/?q=i", "/alarms", "/stats"):
            with urllib.request.urlopen(served.base + page, timeout=20) as response:
                assert response.status == 200
                html = response.read().decode()
            assert "Index rows that cannot be read" in html, page
            assert html.count("instance &#39;i1&#39;") == 1, page
            if page != "/stats":
                assert "i2" in html, page
