"""Write docs/debugging.md from real ``durable-jobs`` output.

Usage: ``python scripts/debugging_doc.py [OUTPUT]`` (default: docs/debugging.md).

The script fills an SQLite store with the runtime in virtual time (a fixed
start, so every time and version is the same on every run), then runs each
command of the walk-through on it and pastes what it printed into the page.
``tests/test_debugging_doc.py`` runs it and checks the committed page is what
it writes, so the page cannot drift from the tool.
"""

# ruff: noqa: E501 - the page's markdown tables are long lines by nature

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import sys
import tempfile
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio
import trio.testing
from pydantic import BaseModel

import durable_jobs as dj
from durable_jobs.cli import run

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "docs" / "debugging.md"

#: Virtual time: the story starts at START; the scheduler stops at STOP; the
#: commands are run "at" NOW (``$DURABLE_JOBS_NOW``), half an hour later.
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STOP = START + timedelta(hours=1)
NOW = "2026-03-02T10:30:00Z"
STORE = "sqlite:///jobs.db"


# ---- the app whose job fails -------------------------------------------------------------


class InvoiceAPIError(Exception):
    """What the (pretend) billing API raises."""


# Shown as the app's own module, not ``__main__``, in the recorded error type.
InvoiceAPIError.__module__ = "billing"

LAST_PAGE = 1000
PAGE = 400


class Sync(BaseModel):
    cursor: int = 0
    synced: int = 0


def make_registry() -> dj.Registry:
    registry = dj.Registry()

    @registry.continuous(
        "invoice-sync",
        state=Sync,
        schedule=dj.every(timedelta(minutes=15)),
        retry=dj.Retry(
            3,
            delay=dj.Backoff.exponential(base=timedelta(seconds=30), max=timedelta(minutes=5)),
            jitter=0,
            on_exhausted="pause",
        ),
    )
    async def invoice_sync(ctx: dj.ContinuousContext[Sync]) -> None:
        cursor = ctx.state.cursor
        if cursor > LAST_PAGE:
            msg = f"400 Bad Request: cursor {cursor} is past the last invoice ({LAST_PAGE})"
            raise InvoiceAPIError(msg)
        # The bug: the cursor moves a whole page even when the page was short.
        ctx.set_state(Sync(cursor=cursor + PAGE, synced=ctx.state.synced + PAGE))

    @registry.debounce(
        "digest", event=str, state=list[str], flush_after=timedelta(minutes=5), max_events=10
    )
    async def digest(ctx: dj.DebounceContext[list[str]]) -> None:
        pass

    @digest.on_event
    def collect(ctx: dj.DebounceEventContext[str, list[str]]) -> list[str]:
        return [*(ctx.state or []), ctx.event]

    return registry


async def fill(url: str) -> None:
    """Run the app for one (virtual) hour from START, then stop it."""
    async with dj.open_jobs(make_registry(), url, clock=dj.VirtualClock(START)) as jobs:
        sync = jobs.continuous("invoice-sync")
        digest = jobs.debounce("digest")
        await sync.start("acme", Sync())
        await trio.sleep(600)
        await digest.add("ann", "invoice 17 paid")
        await digest.add("ann", "invoice 18 paid")
        await trio.sleep(1800)
        await sync.start("globex", Sync())
        await trio.sleep(1080)
        await digest.add("ann", "invoice 19 overdue")
        await trio.sleep(120)
        await jobs.wait_idle()
        assert jobs.clock.now() == STOP


# ---- running the commands ----------------------------------------------------------------


def cli(*args: str, expect: int = 0) -> str:
    """Run ``durable-jobs ARGS`` here; a console block of the command and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(args))
    if code != expect:
        msg = f"durable-jobs {' '.join(args)} exited {code}: {err.getvalue()}"
        raise SystemExit(msg)
    text = "\n".join(line.rstrip() for line in (out.getvalue() + err.getvalue()).splitlines())
    return f"```console\n$ durable-jobs {' '.join(args)}\n{text}\n```\n"


def cli_json(*args: str) -> str:
    """Like :func:`cli` for a ``--json`` command, shown through ``python -m json.tool``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run([*args, "--json"])
    if code != 0:
        raise SystemExit(f"durable-jobs {' '.join(args)} --json exited {code}")
    pretty = json.dumps(json.loads(out.getvalue()), indent=4)
    return f"```console\n$ durable-jobs {' '.join(args)} --json | python -m json.tool\n{pretty}\n```\n"


def api_example() -> None:
    with dj.Inspector("sqlite:///jobs.db") as inspector:
        failed = inspector.instances(kind="continuous", status="failed").items
        for summary in failed:
            records = inspector.history(summary.kind, summary.job, summary.instance_id)
            last = next(r for r in reversed(records) if r.name == "run_failed")
            print(summary.instance_id, last.data["error_type"], last.data["message"])
            print("  started from", last.state_before)
        before = inspector.state_at("continuous", "invoice-sync", "acme", version=8)
        after = inspector.state_at("continuous", "invoice-sync", "acme", version=11)
        assert before is not None and after is not None
        print("cursor at v8:", before.state["cursor"], "at v11:", after.state["cursor"])


def api_block() -> str:
    source = textwrap.dedent(inspect.getsource(api_example)).splitlines()[1:]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        api_example()
    code = "import durable_jobs as dj\n\n" + textwrap.dedent("\n".join(source))
    return f"```python\n{code}\n```\n\nprints\n\n```text\n{out.getvalue().rstrip()}\n```\n"


# ---- the page ----------------------------------------------------------------------------


def page() -> str:
    parts = [
        HEADER,
        cli("list"),
        AFTER_LIST,
        cli("status", "continuous", "invoice-sync", "acme"),
        AFTER_STATUS,
        cli("history", "continuous", "invoice-sync", "acme"),
        AFTER_HISTORY,
        cli("history", "continuous", "invoice-sync", "acme", "--from", "12", "--states"),
        BEFORE_STATE,
        cli("state", "continuous", "invoice-sync", "acme", "--at", "11"),
        AFTER_STATE,
        cli("state", "continuous", "invoice-sync", "acme", "--at", "2026-03-02T09:20:00Z"),
        BEFORE_DIFF,
        cli("diff", "continuous", "invoice-sync", "acme", "1", "11"),
        AFTER_DIFF,
        cli("diff", "continuous", "invoice-sync", "acme", "8", "18", "--full"),
        BEFORE_ALARMS,
        cli("alarms"),
        AFTER_ALARMS,
        cli("alarms", "--overdue"),
        BEFORE_STATS,
        cli("stats"),
        BEFORE_JSON,
        cli_json("status", "continuous", "invoice-sync", "acme"),
        BEFORE_ERRORS,
        cli("status", "continuous", "invoice-sync", "initech", expect=1),
        cli("--store", "sqlite:///typo.db", "list", expect=1),
        AFTER_ERRORS,
        DASHBOARD,
        BEFORE_API,
        api_block(),
        REFERENCE,
    ]
    return "\n\n".join(part.strip("\n") for part in parts if part.strip()) + "\n"


HEADER = f"""\
# Debugging: why did my job fail?

<!-- Generated by scripts/debugging_doc.py from real output; do not edit by hand.
     tests/test_debugging_doc.py checks that this page is what the script writes. -->

Every job instance keeps its whole history in the store: each run, each try
and its error, each alarm, each state change. The `durable-jobs` command reads
that history from any store (`memory://` excepted: it lives in one process, and the commands refuse it),
with or without an app serving it, and never changes anything. This page
follows one failure from the first symptom to its cause.

The app here has a continuous job, `invoice-sync`, that pages through a
billing API every 15 minutes and keeps its cursor in its state, with a retry
policy of three tries and `on_exhausted="pause"`; and a debounce job, `digest`,
that batches notifications. It ran for an hour from {START:%Y-%m-%d %H:%M} UTC
and was then stopped. The commands below run half an hour later.

Name the store once for the whole session (or pass `--store URL` to each
command):

```console
$ export DURABLE_JOBS_STORE={STORE}
```

## 1. `list`: which instances are in trouble?

"""

AFTER_LIST = """\
`acme` is `failed`: paused after its retries ran out (a continuous instance
that is merely retrying stays `running`, with its next try as its alarm).
`RUNS` counts runs; the retries of a run do not count again. `VER` is the
number of records in the instance's log. `--kind`, `--job` and `--status`
filter; `--limit` (100 by default, at most 10000) and `--cursor` page through
large stores.

## 2. `status`: what is it doing now?

"""

AFTER_STATUS = """\
`last error` is the latest failure that no later run of the same handler made
good (looked for among the generation's last 500 records), with the version of
its record, so you know where to look in the history. A failure followed by a
good run of the same handler shows no last error; the history still has it.

## 3. `history`: what happened, and when?

"""

AFTER_HISTORY = """\
Read it top down: three good runs, 15 minutes apart, each committing a new
state and the next alarm; then run 4 fails, is retried 30 s and 60 s later
(the exponential backoff), fails each time with the same `InvoiceAPIError`,
and the instance is paused (`retry_exhausted`, action `pause`) with no alarm
left. Times are UTC; `AGO` is relative to now.

`--from`, `--to` (versions from 1, `--from` not after `--to`) and `--last N`
select a range; `--states` adds the state each
run started from (the state at the version before the run's record):

"""

BEFORE_STATE = """\
## 4. `state --at`: what did the state look like?

The failing run started from version 11 (its first `run_failed` is version
12). Time travel to it, by version:

"""

AFTER_STATE = """\
or by time: the state as it was at that moment (the last version recorded at
or before it):

"""

BEFORE_DIFF = """\
## 5. `diff`: what changed, and since when?

The cursor started at 0; compare the first version with the one the failing
run started from:

"""

AFTER_DIFF = """\
Paths are JSON Pointers into the state. The cursor moved by a whole page (400)
on every run and overshot the last invoice (1000): that is the bug. `--full`
compares everything the instance knows (counters, alarm, retry bookkeeping,
debounce batches, idempotency keys), not only its state:

"""

BEFORE_ALARMS = """\
Once the handler is fixed and deployed, `trigger` (from the app, e.g.
`await jobs.continuous("invoice-sync").trigger("acme")`) runs it again and
resumes the schedule.

## 6. `alarms`: what is due next, and is anything late?

"""

AFTER_ALARMS = """\
`globex`'s next sync and `ann`'s digest flush were due while no app was
serving the store. Overdue alarms for a moment are normal under load; alarms
that stay overdue mean no scheduler is running (or it cannot keep up). They
are not lost: the next `open_jobs` on this store fires them
(see the misfire policy in the guide). `--overdue` shows only those:

"""

BEFORE_STATS = """\
## 7. `stats`: the whole store at a glance

Instances per job by status, and their alarms; read from the instance index
alone, so it is fast on large stores:

"""

BEFORE_JSON = """\
## Scripting: `--json`

Every command takes `--json` and prints one JSON document (shapes below) on a
single line; times are ISO 8601 UTC with a `Z`. Values are exactly as stored
(JSON escapes what needs it), while human output writes control characters,
format characters (bidi overrides, zero-width ones such as `\\u200b`, `\\ufeff`
and the soft hyphen `\\xad`) and line separators found in ids, states and
messages as escapes (`a\\x1b[31m`, `line\\n2`, `\\u202e`), and a backslash in
them as `\\\\` (JSON shown there, such as a state, escapes its backslashes
itself), so an instance id cannot recolour the terminal, split a table row or
pass for another id: `acme` followed by a zero-width space shows as
`acme\\u200b`, and an id that spells out those six characters as
`acme\\\\u200b`. The JSON output:

"""

BEFORE_ERRORS = """\
## Errors

Problems are one line on stderr starting with `error:`, and exit code 1. An
unknown instance, a missing SQLite file or Postgres schema (never created by
a read: these commands open the store read-only), a store that cannot be
reached (its password is never printed, even in a malformed URL) or a record
that cannot be decoded (the message names the instance and version; `list`
still lists every other instance and marks that one `unreadable`):

"""

AFTER_ERRORS = """\
An *index row* that cannot be read (the one row per instance that holds its
status and next alarm, edited by hand or by a faulty tool: a `due_at` of
`'soon'` or `1e300`) does not hide the rest of the store from the read-only
commands. `list`, `alarms`, `stats` and `replay --all` show every other
instance, name the row they left out on stderr (`error: The index row of
continuous job 'tick' instance 'i1' (instance '7d3d…') cannot be read: its
due_at is 'garbage'. …`), and exit 1; the dashboard shows the same message
above its table; `doctor` names every such row. An export stops at it (an
export leaves nothing out), and `open_jobs` refuses the store, naming the
row, until it is fixed. The instance's log is not affected.
"""

DASHBOARD = f"""\
The other way round, a log whose index row is gone (deleted, or the index
table restored from another backup than the events) is an instance the
runtime never runs (its alarms are read from the index) and whose id cannot
be started again: `doctor` names it, `replay --all` reports it (by what its
events say) with the index row missing, and an export of the whole store
refuses to leave it out. A snapshot newer than the end of its log (the
snapshots table restored from another time) is a `replay` divergence
(`snapshot latest_version`): the runtime would load it and leave a gap in
the log.

## The web dashboard: `durable-jobs ui`

The same views in a browser, updated live. The dashboard needs the `ui`
extra (`pip install './durable-jobs[ui]'` from your checkout); it is served on 127.0.0.1 and reads
only, unless told otherwise:

```console
$ durable-jobs ui --store {STORE}
Dashboard on http://127.0.0.1:8470/ (sqlite:///jobs.db, read-only)
```

- **Instances** (`/`): filter by kind, job and status, search by id (any
  part of it), 50 a page; below, the store's latest events, with new ones
  added as they are committed.
- **One instance**: status, counters and the next alarm; the state (at any
  version: each version number on the timeline links to it); the diff
  between two versions (of the state, or of all the instance's data); the
  timeline of its records, with each run's attempt, duration and outcome,
  each error with its message, flushes, alarms set and cleared: its latest
  200 records, with links to earlier ones (`&upto=VERSION` ends the timeline
  at that version). Records committed while the latest page is open are
  added to it.
- **Alarms**: the overdue ones (how late) and the pending ones (due when).
- **Stats**: per job, instances by status and their alarms.

![The instances page](img/dashboard-instances.png)

![One instance: state, diff and timeline](img/dashboard-instance.png)

![Alarms](img/dashboard-alarms.png)

![Stats](img/dashboard-stats.png)

Live updates are server-sent events fed by the same tail as `durable-jobs
tail` (Postgres wakes on NOTIFY; SQLite is polled every quarter second).
All open live pages (tabs showing the instances page or an instance; a
hidden tab closes its stream) share one tail of the store: one thread and,
on Postgres, one LISTEN connection (see
[connection sizing](operations.md#connections-and-pool-sizing)). Each page
first catches up on what was committed since it was rendered (a short read
of its own), then gets the shared tail's events. The dashboard serves at most
`--max-live N` live pages at once (16 by default; 0: no live updates): one
more gets HTTP 503 with `Retry-After` and a message saying so, the dashboard
logs one warning, and the page works on without live updates, saying "live
updates paused" (it tries again every 30 seconds). A page that falls far
behind (1000 events) has its stream ended, and so does a catch-up once it has
sent 1000; the browser reconnects from the last event it got and goes on.

Safety:

- `--host` (default 127.0.0.1) and `--port` (default 8470; 0 picks a free
  one). Serving another address without `--auth-env` prints a warning, and
  with `--allow-actions` is refused: anyone who could reach it could terminate
  and purge instances.
- Requests must name the dashboard in their `Host` header, or get 400
  (a page on another site whose name resolves to your machine, "DNS
  rebinding", cannot read or act). A `Host` is a name or an address and
  an optional port, nothing else (`127.0.0.1:8470@evil.example` is
  refused). The names: the `--host` address; on loopback also
  `localhost`, `127.0.0.1` and `::1`; on `0.0.0.0` or `::` any IP address,
  `localhost` and the machine's host name. `--allow-host NAME` (repeatable,
  or `DURABLE_JOBS_UI_ALLOW_HOSTS` holding names separated by spaces) adds
  a name, e.g. the one a proxy in front forwards.
- Requests a browser makes for a page of another site are refused with 403:
  those whose `Origin` header is not the dashboard's own (`http://` or
  `https://`, the latter for a proxy in front that adds TLS, and the `Host`
  it was asked for), and those marked `Sec-Fetch-Site: cross-site` (an
  `<img src>`, which sends no `Origin`) or `same-site` (a page on another
  port, such as `localhost:3000`). A live stream is refused before it
  takes one of the `--max-live` places (pages of other sites could take
  them all), and an action even with a valid CSRF token ("sent by a page of
  another site"; nothing changes). Requests with neither header (curl,
  scripts) and the dashboard's own pages are served. Behind a proxy, have it
  pass the browser's `Host` header on unchanged.
- `--auth-env VAR` requires HTTP basic auth with the `user:password` held by
  the environment variable `VAR` (never printed or logged). Basic auth sends
  the password with every request: beyond localhost, put TLS in front.
- Every value from the store is HTML-escaped (a state holding `<script>`
  shows as text), and pages load only the dashboard's own script and
  stylesheet (no CDN, no build step). Control and format characters are
  shown as escapes and a backslash as `\\\\`, as in the CLI's human output (an
  id `"\\u202egnp.exe"` shows as `\\u202egnp.exe`, not reversed as `exe.png`;
  `"acme\\u200b"`, with a zero-width space, shows as `acme\\u200b` and is not
  `acme`; an id spelling out `acme\\u200b` shows as `acme\\\\u200b`; an id
  `"a\\nb"` shows as `a\\nb` in tables, headings, titles and the live feed),
  except newlines and tabs of the JSON and messages shown as blocks.
- An instance id is taken as sent (`?id=` is not trimmed: `"trail "` and
  `"trail"` are two instances; only the search box drops the spaces around
  its text), and links and forms carry ids exactly as stored (forms send
  them percent-encoded, as `iq`: a browser sends a form field's newlines as
  CRLF).
- Every response, refusals and errors included (a 401 of `--auth-env`, a 400
  of the `Host` check, the server's own 400 or 431 for a request it cannot
  parse or whose head is too large), carries a Content-Security-Policy
  allowing only the dashboard's own script and stylesheet,
  `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and
  `Referrer-Policy: same-origin`. All but the static assets (`no-cache`) and
  the server's own refusals (which have no body) are
  `Cache-Control: no-store`: no browser or proxy cache keeps the states and
  payloads the pages show.
- `--allow-actions` adds buttons on an instance's page. Each opens a
  confirmation page that shows the instance's version and generation, and
  whose form carries a CSRF token valid for that action on that instance as
  shown only; only that POST changes anything. If the instance was started
  again since the page was shown (terminated, or purged, and started anew:
  another generation, told apart by its number and the time it began), the
  action is refused with "changed since the
  confirmation page was shown" and nothing changes: reload its page and
  confirm again. Runs of the same generation since then do not matter. No
  handler runs in the dashboard: an action commits events, and a worker
  serving the store acts on them. A confirmed action redirects to its Done
  page, which a refresh shows again without sending the form. The form sent
  twice anyway (a double click) acts once: Resume is refused when the
  instance is no longer paused, Run now when its next run is due already
  ("nothing was written").

| action | offered when | commits (as the command) |
|---|---|---|
| Run now | a live instance with something to run (debounce: buffered events); refused while its run is due already | `alarm_set` at now; debounce: the open batch `batch_closed` (reason `manual`), or `resumed` for a batch waiting for a retry (`trigger`) |
| Resume | a paused instance (status `failed`); refused once it is not | `resumed` and `alarm_set` at now (`trigger`) |
| Terminate | any live instance | `alarm_cleared` (if an alarm was set) and `terminated`, reason `terminated from the dashboard` (`terminate`) |
| Purge | a terminated instance | deletes its history (`purge`) |

On SQLite the actions are refused while a jobs runtime serves the file (that
process keeps instances in memory and would not see them): stop the app
first. On Postgres each action holds the instance's lock while it commits,
so it never interleaves with a run, and a worker hears of the new alarm at
once. A run of the instance in flight in a worker holds that lock: the action
waits for it to end, up to 10 seconds (the page answers then), and is
refused if it is still running ("still busy ... try again in a moment";
nothing was written). While one action waits, the other pages are served as
usual; further actions wait their turn.

The screenshots come from `python scripts/dashboard_screenshots.py`, which
serves this page's store and photographs it in headless Chromium.
"""

BEFORE_API = """\
With `--json`, a problem is one JSON object on stderr instead, with the same
exit code: `{"error": "No SQLite store at ...", "type": "ConfigurationError",
"exit_code": 1}` (`type` names the error; usage errors have exit code 2).

## The same from Python: `durable_jobs.Inspector`

The command line is a thin layer over `dj.Inspector`, a read-only API that
works on any store (or store URL), with or without a scheduler running. Its
methods are synchronous: in a trio app, call them through
`trio.to_thread.run_sync`.

"""

REFERENCE = f"""\
| method | returns |
|---|---|
| `instances(kind=, job=, status=, cursor=, limit=100)` | `InstancePage(items: list[InstanceSummary], next_cursor)` |
| `iter_instances(kind=, job=, status=)` | every `InstanceSummary`, page by page |
| `status(kind, job, id)` | `InstanceSummary` or `None` |
| `history(kind, job, id, from_version=1, to_version=None)` | `list[RecordedEvent]` (`docs/events.md`); run records carry `run_count`, `attempt`, `state_before` |
| `state_at(kind, job, id, version=None, at=None)` | `StateAt` (the latest, a version, or the last version at or before a time) or `None` |
| `diff(kind, job, id, v1, v2, full=False)` | `StateDiff(before, after, full, changes: list[StateChange])` or `None` |
| `alarms(now=None, overdue=False, limit=100)` | `list[PendingAlarm]`, earliest first, `lateness = now - due_at` |
| `stats(kind=, job=, now=None)` | `list[JobStats]`, by kind and job |

Unknown jobs and instances give `None` or nothing; a malformed kind, job name,
id, status, cursor or version (or a `history` range whose `from_version` is
after its `to_version`, which the CLI refuses too) raises `ValidationError`; an
unreadable record raises `StoreError` naming the instance and version. An index row that cannot
be read raises `StoreError` naming the instance and the column, unless
`instances`, `iter_instances`, `alarms` and `stats` are given
`unreadable=errors.append`: then each such row is passed to it and left out
(`Store.list_instances`, `iter_instances`, `due_alarms` and `next_alarms` take
the same keyword). Every result type has
`to_json()`, the shape `--json` prints.

## Reference

### Relative times and `DURABLE_JOBS_NOW`

"5m ago", "24m late" and "in 5m" are relative to the current time, or to
`$DURABLE_JOBS_NOW` (an ISO 8601 time) if it is set: that is how this page
and the tests get the same output on every run (this page used
`DURABLE_JOBS_NOW={NOW}`). It only changes what is shown:
`trigger` and `terminate` date what they write by the real clock. Output goes through rich: colour on a terminal,
plain text when piped; piped tables are as wide as they need unless
`$COLUMNS` sets a width.

### JSON documents

Times are ISO 8601 UTC strings (`2026-01-01T00:00:00Z`) or `null`; a
*summary* is the object `list` shows per instance; a *record* is one history
record. New keys may be added; existing keys keep their meaning.

| command | document |
|---|---|
| `list` | `{{"instances": [summary, ...], "next_cursor": str \\| null}}` |
| `status` | `{{"instance": summary, "last_error": record \\| null}}` |
| `history` | `{{"kind", "job", "instance_id", "instance_uuid", "latest_version", "records": [record, ...]}}` |
| `state` | `{{"kind", "job", "instance_id", "instance_uuid", "version", "latest_version", "at", "status", "live", "due_at", "state", "data"}}` |
| `diff` | `{{"kind", "job", "instance_id", "scope": "state" \\| "data", "from": {{"version", "at", "status"}}, "to": {{...}}, "changes": [{{"path", "op", "old"?, "new"?}}, ...]}}` |
| `alarms` | `{{"now", "overdue_only", "alarms": [{{"kind", "job", "instance_id", "instance_uuid", "status", "due_at", "overdue", "lateness_seconds"}}, ...]}}` |
| `stats` | `{{"now", "jobs": [{{"kind", "job", "total", "by_status": {{status: count}}, "pending_alarms", "overdue_alarms", "next_due_at", "oldest_overdue_at"}}, ...]}}` |

- summary: `kind`, `job`, `instance_id`, `instance_uuid`, `status`, `version`
  (records in the log), `generation` (1, then +1 per restart after a
  termination), `created_at` (of this generation), `updated_at`, `due_at` (the
  alarm), `run_count`, `event_count` (debounce: events not yet flushed; task:
  events received; continuous: `null`), `attempt` (the failed try of a run
  waiting for its retry, 0 if none), `error` (`null`, or why the log could not
  be read; the counters are then `null`).
- record: `version`, `at`, `name` (`docs/events.md`), `run_count` and
  `attempt` (run records, else `null`), `data` (the record's fields),
  `state_before` (run records: the state the run started from, else `null`).
- `diff` paths are JSON Pointers; `op` is `added` (with `new`), `removed`
  (with `old`) or `changed` (both). Objects are compared by key, arrays by
  index.
- `lateness_seconds` is `now - due_at`: positive when overdue, negative when
  still to come.

### Other commands

`replay` (rebuild an instance from its full log and compare it with its
snapshot and live state), `export`/`import` (JSONL, e.g. SQLite to Postgres),
`tail` (follow new records) and `purge` (delete a terminated instance's
history) are maintenance commands; see `durable-jobs --help`.

`terminate KIND JOB ID [--reason R]` and `trigger KIND JOB ID` are the quiet
admin path: they need no handlers (no app code, and no overdue alarm of any
other instance fires). `terminate` does what the client's `terminate(id)`
does. `trigger` makes the instance's next run due now: it resumes a paused
(`failed`) instance, brings a waiting retry forward, or closes a debounce
instance's open batch (reason `manual`); a runtime serving the store then
runs it (at once on Postgres; on SQLite when one starts). Both write, and
both are refused while a runtime serves an SQLite store (stop it, or use the
client there). An instance that does not exist (a typo in the job name or the
id) is an error, exit code 1, as for `status`, and nothing is written; an
instance with nothing to do (terminated already, or for `trigger` nothing to
run) prints `Nothing done: ...` and exits 0 (`--json`: `"done": false`).

`check --app module:attribute` imports the app's `Registry` and decodes every
live instance's state and pending events with it (types, `version`,
upcasters), listing those that would fail; exit code 1 if any. Run it before
deploying changed types. Live instances of jobs the app does not define are
not checked (no runtime of this app would run them): the command lists them,
`Not checked: N live instance(s) of jobs the app does not define: ...`.
`--json` prints `{{"ok", "checked", "failures": [{{"kind", "job",
"instance_id", "what", "type_version", "problem"}}], "not_checked":
[{{"kind", "job", "live_instances"}}]}}`.
"""


def main(argv: list[str]) -> int:
    output = Path(argv[0]).resolve() if argv else DEFAULT_OUTPUT
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        os.environ.pop(name, None)
    os.environ["DURABLE_JOBS_NOW"] = NOW
    os.environ["DURABLE_JOBS_STORE"] = STORE
    with tempfile.TemporaryDirectory() as tmp:
        previous = Path.cwd()
        os.chdir(tmp)
        try:
            trio.run(fill, STORE, clock=trio.testing.MockClock(autojump_threshold=0))
            text = page()
        finally:
            os.chdir(previous)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
