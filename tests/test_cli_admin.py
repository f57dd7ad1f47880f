"""``durable-jobs terminate`` and ``trigger``: the quiet admin path.

They need no handlers (no registry): each commits domain events to one
instance, and a runtime serving the store then acts on them. While a runtime
serves an SQLite store they are refused, and write nothing. Checked on real
SQLite and Postgres, in virtual time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio.testing

import durable_jobs as dj
from _runtime import HOUR, MINUTE, SECOND, T, advance, names, parked_job, running
from durable_jobs.cli import run

PAUSE = dj.Retry(max_attempts=2, delay=dj.Backoff.constant(SECOND), jitter=0, on_exhausted="pause")


class Cli:
    def __init__(
        self, url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.url, self.capsys, self.monkeypatch = url, capsys, monkeypatch

    def __call__(self, clock: dj.VirtualClock, *args: str) -> tuple[int, str, str]:
        """Run the CLI with its "now" at the virtual clock's time."""
        self.monkeypatch.setenv("DURABLE_JOBS_NOW", clock.now().isoformat())
        self.capsys.readouterr()
        code = run(["--store", self.url, *args])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, clock: dj.VirtualClock, *args: str) -> Any:
        code, out, err = self(clock, *args, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(
    durable_store_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    monkeypatch.delenv("DURABLE_JOBS_STORE", raising=False)
    return Cli(durable_store_url, capsys, monkeypatch)


def app(calls: list[str], *, failing: set[str]) -> dj.Registry:
    """A continuous job, a debounce job and a task; ids in ``failing`` raise."""
    registry = dj.Registry()

    @registry.continuous("sync", state=int, schedule=dj.every(HOUR), retry=PAUSE)
    async def sync(ctx: dj.ContinuousContext[int]) -> None:
        calls.append(f"sync {ctx.instance_id}")
        if ctx.instance_id in failing:
            raise ConnectionError("bank down")
        ctx.set_state(ctx.state + 1)

    @registry.debounce("digest", event=str, flush_after=HOUR, retry=PAUSE)
    async def digest(ctx: dj.DebounceContext[str]) -> None:
        calls.append(f"digest {ctx.instance_id} {ctx.flush_reason} {ctx.event_count}")
        if ctx.instance_id in failing:
            raise ConnectionError("mail down")

    @registry.task("remind", event=str, state=int)
    async def remind(ctx: dj.TaskContext[int]) -> None:
        calls.append(f"remind {ctx.instance_id}")

    @remind.on_event
    async def on_event(event: str, ctx: dj.TaskContext[int]) -> None:
        ctx.schedule(timedelta(minutes=10))

    return registry


async def test_trigger_resumes_paused_instances_that_a_runtime_then_runs(
    durable_store_url: str, cli: Cli, autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []
    failing = {"bad"}
    # The CLI dates what it writes by the real clock: the runtime's virtual time
    # starts there, so an hour later (virtual) the alarm trigger set is due.
    clock = dj.VirtualClock(datetime.now(UTC).replace(microsecond=0))
    async with running(app(calls, failing=failing), durable_store_url, clock=clock) as jobs:
        await jobs.continuous("sync").start("bad", 0)
        await jobs.continuous("sync").start("ok", 0)
        await jobs.debounce("digest").add("bad", "a")
        await advance(jobs, HOUR + 5 * SECOND)  # both "bad" ones fail twice and pause
        await jobs.debounce("digest").add("later", "b")  # a batch open for an hour
        assert (await jobs.continuous("sync").status("bad")).status == "failed"
        assert (await jobs.debounce("digest").status("bad")).status == "failed"
    failing.clear()  # the outage is over
    calls.clear()
    await trio.sleep(60)

    assert cli.json(clock, "status", "continuous", "sync", "ok")["instance"]["status"] == "running"
    version_ok = cli.json(clock, "status", "continuous", "sync", "ok")["instance"]["version"]
    done = cli.json(clock, "trigger", "continuous", "sync", "bad")
    assert (done["done"], done["status"]) == (True, "running")
    # UTC with a Z, as every other JSON document of the tools shows times.
    assert done["due_at"].endswith("Z")
    assert datetime.fromisoformat(done["due_at"]) < clock.now()
    code, out, err = cli(clock, "trigger", "debounce", "digest", "bad")
    assert code == 0, err
    assert "Triggered debounce job 'digest' instance 'bad'" in out
    code, out, err = cli(clock, "trigger", "debounce", "digest", "later")  # an open batch
    assert code == 0, err
    # Quiet: nothing ran, and no other instance was touched.
    assert calls == []
    assert (
        cli.json(clock, "status", "continuous", "sync", "ok")["instance"]["version"] == version_ok
    )
    history = cli.json(clock, "history", "continuous", "sync", "bad")["records"]
    assert [r["name"] for r in history[-2:]] == ["resumed", "alarm_set"]

    async with running(app(calls, failing=failing), durable_store_url, clock=clock) as jobs:
        await jobs.wait_idle()
        assert sorted(calls) == [
            "digest bad flush_after 1",
            "digest later manual 1",
            "sync bad",
        ]
        assert (await jobs.continuous("sync").status("bad")).status == "running"
        assert (await jobs.debounce("digest").status("bad")).status == "idle"


async def test_durable_jobs_now_does_not_date_what_the_commands_write(
    durable_store_url: str, cli: Cli, autojump_clock: trio.testing.MockClock
) -> None:
    """$DURABLE_JOBS_NOW is the "now" of displayed relative times only."""
    async with running(
        app([], failing=set()), durable_store_url, clock=dj.VirtualClock(T)
    ) as jobs:
        await jobs.continuous("sync").start("a", 0)
        await jobs.continuous("sync").start("b", 0)
        await jobs.wait_idle()
    in_2030 = dj.VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))
    done = cli.json(in_2030, "trigger", "continuous", "sync", "a")
    assert done["done"] is True
    assert datetime.fromisoformat(done["due_at"]) <= datetime.now(UTC)  # not in 2030
    in_2000 = dj.VirtualClock(datetime(2000, 1, 1, tzinfo=UTC))
    assert cli.json(in_2000, "terminate", "continuous", "sync", "b")["done"] is True
    records = cli.json(in_2000, "history", "continuous", "sync", "b")["records"]
    assert records[-1]["name"] == "terminated"
    dated = [datetime.fromisoformat(r["at"]) for r in records]
    assert dated == sorted(dated)  # the termination is not dated before the start


async def test_terminate_needs_no_handlers_and_keeps_the_counters(
    durable_store_url: str, cli: Cli, autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []
    clock = dj.VirtualClock(T)
    async with running(app(calls, failing=set()), durable_store_url, clock=clock) as jobs:
        for _ in range(3):
            await jobs.task("remind").send("r1", "ping")
            await advance(jobs, 10 * MINUTE)
        await jobs.task("remind").send("r1", "ping")  # an alarm 10 minutes ahead
        assert await jobs.task("remind").status("r1") == dj.TaskStatus(
            "active", clock.now() + 10 * MINUTE, 4, 3, T
        )
    calls.clear()
    await trio.sleep(HOUR.total_seconds())  # down: the alarm is overdue now

    code, out, err = cli(clock, "terminate", "task", "remind", "r1", "--reason", "user left")
    assert code == 0, err
    assert "Terminated task job 'remind' instance 'r1'" in out
    status = cli.json(clock, "status", "task", "remind", "r1")["instance"]
    assert status["status"] == "terminated"
    assert (status["run_count"], status["event_count"]) == (3, 4)  # both counters kept
    again = cli.json(clock, "terminate", "task", "remind", "r1")
    assert (again["done"], again["found"]) == (False, True)
    code, out, err = cli(clock, "terminate", "task", "remind", "nobody")
    assert (code, out) == (1, "")
    assert err.startswith("error: No task job 'remind' instance 'nobody' in the store")
    history = cli.json(clock, "history", "task", "remind", "r1")["records"]
    assert [r["name"] for r in history[-2:]] == ["alarm_cleared", "terminated"]
    assert history[-1]["data"]["reason"] == "user left"

    async with running(app(calls, failing=set()), durable_store_url, clock=clock) as jobs:
        await advance(jobs, HOUR)
        assert calls == []  # the overdue alarm was removed with the instance
        assert (await jobs.task("remind").status("r1")).status == "not_found"


async def test_refused_while_a_runtime_serves_the_file_under_another_name(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The CLI reaching the served file through a symlink or sub/.. is refused too."""
    real = tmp_path / "real.db"
    (tmp_path / "link.db").symlink_to(real)
    (tmp_path / "sub").mkdir()
    calls: list[str] = []
    clock = dj.VirtualClock(T)
    async with running(app(calls, failing=set()), f"sqlite:///{real}", clock=clock) as jobs:
        await jobs.task("remind").send("r1", "ping")
        for other in (tmp_path / "link.db", tmp_path / "sub" / ".." / "real.db"):
            cli = Cli(f"sqlite:///{other}", capsys, monkeypatch)
            code, out, err = cli(clock, "terminate", "task", "remind", "r1")
            assert (code, out) == (1, "")
            assert "while a jobs runtime serves" in err, err


async def test_refused_while_a_runtime_serves_an_sqlite_store(
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    cli = Cli(sqlite_url, capsys, monkeypatch)
    calls: list[str] = []
    clock = dj.VirtualClock(T)
    async with running(app(calls, failing=set()), sqlite_url, clock=clock) as jobs:
        await jobs.task("remind").send("r1", "ping")
        before = await jobs.task("remind").history("r1")
        for command in ("terminate", "trigger"):
            code, out, err = cli(clock, command, "task", "remind", "r1")
            assert (code, out) == (1, "")
            assert "while a jobs runtime serves" in err, err
            code, out, err = cli(clock, command, "task", "remind", "r1", "--json")
            assert code == 1 and json.loads(err)["type"] == "ConfigurationError"
        assert names(await jobs.task("remind").history("r1")) == names(before)
    assert cli.json(clock, "terminate", "task", "remind", "r1")["done"] is True


@pytest.mark.postgres
async def test_terminate_waits_for_a_run_in_flight_in_a_worker(pg_url: str) -> None:
    """Postgres, a live worker running the instance: terminate (and trigger) waited
    for nothing and were refused as busy at once, so an instance whose runs follow
    each other could never be stopped from the command line. With ``wait`` they wait
    for the run in flight (as the client's terminate does), then act."""
    from durable_jobs.maintenance import terminate_instance, trigger_instance

    registry, running_now, release = parked_job()

    token = trio.lowlevel.current_trio_token()
    with dj.open_store(pg_url) as admin:
        tries = 0
        try_lock = admin.try_lock  # type: ignore[attr-defined]

        def counted_try_lock(*args: Any) -> bool:
            nonlocal tries
            taken: bool = try_lock(*args)
            tries += 1
            if not taken and tries == 2:
                # The run ends while the command waits for it.
                trio.from_thread.run_sync(release.set, trio_token=token)
            return taken

        async with dj.open_jobs(registry, pg_url) as jobs:
            await jobs.continuous("slow").start("i", 0)
            await running_now.wait()
            for call in (
                lambda: terminate_instance(admin, "continuous", "slow", "i"),
                lambda: trigger_instance(admin, "continuous", "slow", "i"),
            ):
                with pytest.raises(dj.ConcurrencyError, match="busy in another process"):
                    await trio.to_thread.run_sync(call)
            admin.try_lock = counted_try_lock  # type: ignore[attr-defined]
            result = await trio.to_thread.run_sync(
                lambda: terminate_instance(admin, "continuous", "slow", "i", wait=60)
            )
            assert result.done and tries >= 3
            assert (await jobs.continuous("slow").status("i")).status == "not_found"
            history = await jobs.continuous("slow").history("i")
        # The run in flight committed first; the termination came after it.
        recorded = [r.name for r in history]
        assert recorded[-1] == "terminated" and "run_succeeded" in recorded[:-1], recorded
    for bad in (-1, float("nan"), 3601, "5", True):
        with dj.open_store(pg_url) as admin, pytest.raises(dj.ValidationError, match="wait"):
            terminate_instance(admin, "continuous", "slow", "i", wait=bad)  # type: ignore[arg-type]


async def test_a_missing_instance_or_job_is_an_error_nothing_to_do_is_not(
    durable_store_url: str, cli: Cli, autojump_clock: trio.testing.MockClock
) -> None:
    """`terminate`/`trigger` of an instance or job that does not exist said "Nothing
    done" and exited 0 while `status` of it exited 1 (an outside review): a script could
    not tell a typo from success. Now it is the same error as `status` (exit code 1,
    JSON on stderr with --json), and nothing is written; an existing instance with
    nothing to do (terminated already) still exits 0."""
    clock = dj.VirtualClock(T)
    async with running(app([], failing=set()), durable_store_url, clock=clock) as jobs:
        await jobs.continuous("sync").start("c0", 0)
        await jobs.debounce("digest").add("d0", "a")
    history = cli.json(clock, "history", "continuous", "sync", "c0")["records"]
    for command in ("terminate", "trigger"):
        for job, instance_id in (("sync", "nosuch"), ("nojob", "c0")):
            code, out, err = cli(clock, command, "continuous", job, instance_id)
            assert (code, out) == (1, ""), err
            assert err.startswith(f"error: No continuous job {job!r} instance {instance_id!r}")
            assert err.count("\n") == 1
            code, out, err = cli(clock, command, "continuous", job, instance_id, "--json")
            assert (code, out) == (1, "")
            assert json.loads(err)["exit_code"] == 1
            assert cli(clock, "status", "continuous", job, instance_id)[0] == 1
    assert cli.json(clock, "history", "continuous", "sync", "c0")["records"] == history
    assert len(cli.json(clock, "list")["instances"]) == 2  # nothing created

    assert cli.json(clock, "terminate", "continuous", "sync", "c0")["done"] is True
    for command in ("terminate", "trigger"):
        code, out, err = cli(clock, command, "continuous", "sync", "c0")
        assert code == 0, err
        assert out.startswith("Nothing done: continuous job 'sync' instance 'c0' is terminated")
        again = cli.json(clock, command, "continuous", "sync", "c0")
        assert (again["done"], again["found"]) == (False, True)
