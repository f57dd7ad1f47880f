"""The pytest plugin, as a user's project sees it: pytest runs in a fresh project directory.

Each test writes a small test project (its own ``pytest.ini``, so nothing of
ours applies) and runs ``python -m pytest`` on it in a subprocess: with
pytest-trio's ``trio_mode``, with ``@pytest.mark.trio`` and no trio mode, and
with pytest-trio disabled (``-p no:trio``), as for a user who lacks it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

JOBS = """
from datetime import timedelta

import durable_jobs as dj

registry = dj.Registry()


@registry.debounce("digest", event=str, state=list[str], flush_after=timedelta(minutes=1))
async def digest(ctx: dj.DebounceContext[list[str]]) -> None:
    pass


@digest.on_event
def collect(ctx: dj.DebounceEventContext[str, list[str]]) -> list[str]:
    return [*(ctx.state or []), ctx.event]
"""

CONFTEST = """
import pytest

from jobs import registry


@pytest.fixture
def durable_jobs_registry():
    return registry
"""

ASYNC_TESTS = """
from datetime import timedelta

import pytest

from jobs import digest


@pytest.mark.durable_jobs_store("memory", "sqlite")
async def test_a_batch_flushes_once(durable_jobs_harness, autojump_clock, durable_jobs_store_url):
    client = durable_jobs_harness.debounce(digest)
    await client.add("inbox", "a")
    await client.add("inbox", "b")
    await durable_jobs_harness.advance(timedelta(minutes=2))
    assert [f.event_count for f in durable_jobs_harness.flushes(digest, "inbox")] == [2]
    await durable_jobs_harness.restart()
    assert (await durable_jobs_harness.debounce(digest).status("inbox")).status == "idle"
    print("STORE", durable_jobs_store_url)
"""

SYNC_TESTS = """
from datetime import timedelta

import pytest

from jobs import digest


async def _scenario(harness):
    await harness.debounce(digest).add("inbox", "a")
    await harness.advance(timedelta(minutes=2))
    return [f.event_count for f in harness.flushes(digest)]


def test_sync_runner(durable_jobs_run):
    assert durable_jobs_run(_scenario) == [1]


@pytest.mark.durable_jobs_store("sqlite")
def test_sync_runner_on_sqlite(durable_jobs_run, durable_jobs_store_url):
    assert durable_jobs_store_url.startswith("sqlite:////")
    assert durable_jobs_run(_scenario) == [1]
"""


def make_project(root: Path, ini: str, **tests: str) -> Path:
    (root / "pytest.ini").write_text(textwrap.dedent(ini), encoding="utf-8")
    (root / "jobs.py").write_text(JOBS, encoding="utf-8")
    (root / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    for name, source in tests.items():
        (root / f"{name}.py").write_text(source, encoding="utf-8")
    return root


def run_pytest(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    environ.pop("DURABLE_JOBS_TEST_POSTGRES_URL", None)
    environ.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "-s", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=environ,
    )
    return done.returncode, done.stdout + done.stderr


def outcome(output: str) -> dict[str, int]:
    summary = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}


STRICT = """\
[pytest]
addopts = --strict-markers
filterwarnings = error
"""


def test_with_trio_mode(tmp_path: Path) -> None:
    root = make_project(
        tmp_path, STRICT + "trio_mode = true\n", test_async=ASYNC_TESTS, test_sync=SYNC_TESTS
    )
    code, output = run_pytest(root)
    assert code == 0, output
    assert outcome(output) == {"passed": 4}, output
    assert "STORE memory://" in output and "STORE sqlite:////" in output
    assert "test_a_batch_flushes_once[sqlite]" in output


def test_with_the_trio_mark_and_no_trio_mode(tmp_path: Path) -> None:
    marked = ASYNC_TESTS.replace(
        '@pytest.mark.durable_jobs_store("memory", "sqlite")',
        '@pytest.mark.trio\n@pytest.mark.durable_jobs_store("memory", "sqlite")',
    )
    root = make_project(tmp_path, STRICT, test_async=marked, test_sync=SYNC_TESTS)
    code, output = run_pytest(root)
    assert code == 0, output
    assert outcome(output) == {"passed": 4}, output


def test_without_pytest_trio(tmp_path: Path) -> None:
    root = make_project(tmp_path, STRICT, test_sync=SYNC_TESTS)
    code, output = run_pytest(root, "-p", "no:trio")
    assert code == 0, output
    assert outcome(output) == {"passed": 2}, output


LEAK_TESTS = """
from datetime import timedelta

from durable_jobs.testing import FailurePlan

from jobs import digest

failures = FailurePlan()


async def test_a_plans_a_failure_no_run_takes(durable_jobs_harness, autojump_clock):
    failures.fail_next("inbox")
    failures.fail_next("inbox", job=digest)


async def test_b_expects_its_flush_to_succeed(durable_jobs_harness, autojump_clock):
    await durable_jobs_harness.debounce(digest).add("inbox", "a")
    await durable_jobs_harness.advance(timedelta(minutes=2))
    failures.check("inbox")  # would take a failure test_a left behind
    assert [f.event_count for f in durable_jobs_harness.flushes(digest)] == [1]


def test_c_the_sync_runner_checks_too(durable_jobs_run):
    async def scenario(harness):
        failures.fail_next("inbox", handler="on_event")

    durable_jobs_run(scenario)


def test_d_a_plan_cleared_by_the_test_is_fine(durable_jobs_run):
    async def scenario(harness):
        failures.fail_next("inbox")
        failures.clear()

    durable_jobs_run(scenario)


def test_e_a_test_without_the_fixtures_leaves_a_plan():
    failures.fail_next("inbox")  # a hypothesis machine's, say: not checked here


async def test_f_a_later_harness_test_neither_takes_nor_answers_for_it(
    durable_jobs_harness, autojump_clock
):
    await durable_jobs_harness.debounce(digest).add("inbox", "a")
    await durable_jobs_harness.advance(timedelta(minutes=2))
    assert [f.event_count for f in durable_jobs_harness.flushes(digest)] == [1]
"""


def test_a_failure_planned_and_not_taken_fails_its_own_test_not_the_next(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path, STRICT + "trio_mode = true\n", test_leak=LEAK_TESTS)
    code, output = run_pytest(root)
    assert code == 1, output
    # The async fixture's teardown runs in the test's trio run (a failure), the
    # synchronous one's after the test (an error at teardown).
    assert outcome(output) == {"failed": 1, "passed": 5, "error": 1}, output
    assert "PASSED test_leak.py::test_b_expects_its_flush_to_succeed" in output, output
    # A plan left by a test without the plugin's fixtures is dropped before the next
    # test: it failed the next harness test's teardown, naming failures it never planned.
    assert "PASSED test_leak.py::test_f_a_later_harness_test_neither_takes" in output, output
    assert "PASSED test_leak.py::test_d_a_plan_cleared_by_the_test_is_fine" in output, output
    assert re.search(r"(FAILED|ERROR) test_leak.py::test_a_plans_a_failure_no_run_takes", output)
    assert re.search(r"(FAILED|ERROR) test_leak.py::test_c_the_sync_runner_checks_too", output)
    assert (
        "planned failures that no handler call took: fail_next('inbox', times=1, "
        "handler='execute'); fail_next('inbox', times=1, handler='execute', job='digest')"
        in output
    ), output
    assert "fail_next('inbox', times=1, handler='on_event')" in output, output


def test_the_store_option_chooses_for_unmarked_tests(tmp_path: Path) -> None:
    source = "def test_url(durable_jobs_store_url):\n    print('URL', durable_jobs_store_url)\n"
    root = make_project(tmp_path, STRICT, test_url=source)
    code, output = run_pytest(root, "-p", "no:trio", "--durable-jobs-store", "memory,sqlite")
    assert code == 0, output
    assert outcome(output) == {"passed": 2}, output
    code, output = run_pytest(root, "-p", "no:trio", "--durable-jobs-store", "redis")
    assert code != 0
    assert "store names must be among memory, sqlite, postgres" in output


def test_an_unknown_store_in_the_mark_is_a_usage_error(tmp_path: Path) -> None:
    source = (
        "import pytest\n\n@pytest.mark.durable_jobs_store('mysql')\n"
        "def test_url(durable_jobs_store_url):\n    pass\n"
    )
    root = make_project(tmp_path, STRICT, test_url=source)
    code, output = run_pytest(root, "-p", "no:trio")
    assert code != 0
    assert "store names must be among memory, sqlite, postgres; got ('mysql',)" in output


def test_without_a_registry_the_failure_says_what_to_do(tmp_path: Path) -> None:
    root = make_project(tmp_path, STRICT, test_sync=SYNC_TESTS)
    (root / "conftest.py").write_text("", encoding="utf-8")
    code, output = run_pytest(root, "-p", "no:trio")
    assert code == 1, output
    assert "Override the durable_jobs_registry fixture" in output


def schemas(url: str) -> set[str]:
    with psycopg.connect(url.partition("?")[0], autocommit=True) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dj_test_%'")
        return {row[0] for row in rows}


@pytest.mark.postgres
def test_postgres_from_the_option_gets_a_fresh_schema_dropped_after(
    tmp_path: Path, postgres_url: str
) -> None:
    source = ASYNC_TESTS.replace('"memory", "sqlite"', '"postgres"')
    root = make_project(tmp_path, STRICT + "trio_mode = true\n", test_async=source)
    code, output = run_pytest(root, "--durable-jobs-postgres-url", postgres_url)
    assert code == 0, output
    assert outcome(output) == {"passed": 1}, output
    used = re.search(r"STORE \S+schema=(dj_test_\w+)", output)
    assert used is not None, output
    assert used.group(1) not in schemas(postgres_url)  # dropped after the test
    # The same from the environment variable.
    code, output = run_pytest(root, env={"DURABLE_JOBS_TEST_POSTGRES_URL": postgres_url})
    assert code == 0, output


def test_postgres_without_a_server_fails_never_skips(tmp_path: Path) -> None:
    source = SYNC_TESTS.replace('durable_jobs_store("sqlite")', 'durable_jobs_store("postgres")')
    root = make_project(tmp_path, STRICT, test_sync=source)
    code, output = run_pytest(root, "-p", "no:trio")
    assert code == 1, output
    assert "needs a Postgres server: pass --durable-jobs-postgres-url" in output
    assert outcome(output) == {"passed": 1, "error": 1}, output  # an error, not a skip
    dead = "postgresql://nobody:secret@127.0.0.1:1/none"
    code, output = run_pytest(root, "-p", "no:trio", "--durable-jobs-postgres-url", dead)
    assert code == 1, output
    assert "is unreachable" in output and "secret" not in output


def test_importing_durable_jobs_testing_needs_no_pytest() -> None:
    program = (
        "import sys\n"
        "sys.modules['pytest'] = None  # as if pytest were not installed\n"
        "import durable_jobs.testing as t\n"
        "assert t.open_harness and t.run_harness and t.FailurePlan\n"
        "try:\n"
        "    t.StoreConformance\n"
        "except ImportError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "StoreConformance needs pytest: pip install 'durable-jobs[testing]'" in done.stdout


def test_the_schema_option_replaces_one_in_the_url() -> None:
    from durable_jobs.testing.pytest_plugin import _with_schema

    url = _with_schema("postgresql://u@h:5432/db?connect_timeout=3&schema=old", "dj_test_x")
    assert url == "postgresql://u@h:5432/db?connect_timeout=3&schema=dj_test_x"


LEFT_IN_A_TRANSACTION = """\
import psycopg
import pytest
import durable_jobs as dj

KEPT = []


@pytest.mark.durable_jobs_store("postgres")
def test_leaves_a_transaction_open(durable_jobs_store_url):
    dj.open_store(durable_jobs_store_url).close()
    server, _, schema = durable_jobs_store_url.partition("?schema=")
    conn = psycopg.connect(server)
    conn.execute(f'SELECT count(*) FROM "{schema}".dj_instances')  # a lock, kept
    KEPT.append(conn)  # never committed nor closed before the teardown
"""


def test_a_schema_the_test_keeps_locked_fails_the_teardown_not_hangs(
    tmp_path: Path, postgres_url: str
) -> None:
    """The teardown's DROP SCHEMA waited for ever behind a lock of the test's own
    connection, and pytest never ended; it fails after a bound, naming the sessions."""
    root = make_project(tmp_path, STRICT, test_left=LEFT_IN_A_TRANSACTION)
    code, output = run_pytest(root, "-p", "no:trio", "--durable-jobs-postgres-url", postgres_url)
    assert code == 1, output
    assert "could not drop its schema" in output and "idle in transaction" in output, output
    assert outcome(output) == {"passed": 1, "error": 1}, output
