"""The base of the hypothesis state machines: configuration, common rules, the model check.

Imported through :mod:`durable_jobs.testing.machines` (which says what to
install when hypothesis is missing).
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from durable_jobs._definitions.jobs import JobDefinition
from durable_jobs._definitions.registry import Registry
from durable_jobs._errors import ConfigurationError
from durable_jobs._records import RecordedEvent
from durable_jobs._runtime.clock import VIRTUAL_EPOCH
from durable_jobs._store.registry import open_store
from durable_jobs.testing import strategies as djst
from durable_jobs.testing._driver import HarnessThread
from durable_jobs.testing._harness import FailurePlan, Harness, InjectedFailure
from durable_jobs.testing._models import (
    UNKNOWN,
    ContinuousModel,
    DebounceModel,
    ExpectedRun,
    TaskModel,
)
from durable_jobs.testing._readouts import Run

__all__ = ["JobMachine"]

T = TypeVar("T")


def _runner_strategy(name: str) -> st.SearchStrategy[Any]:
    """A rule argument drawn from the machine's own ``name()`` strategy."""
    return st.runner().flatmap(lambda machine: getattr(machine, name)())


def _fmt(value: Any) -> str:
    return repr(value)


class JobMachine(RuleBasedStateMachine):
    """What the per-kind machines share; subclass :class:`ContinuousMachine`,
    :class:`DebounceMachine` or :class:`TaskMachine` instead.

    Class attributes to set: ``registry``, ``job`` (its definition), and
    optionally ``failures`` (the :class:`~durable_jobs.testing.FailurePlan`
    the job's handlers consult: without it no failure is injected),
    ``store`` (default ``memory://``; override :meth:`setup_store` to create
    your own tables in each fresh one), ``instance_ids`` (the ids the commands
    use), ``start`` (the virtual clock's start), ``restarts`` (whether to
    restart the runtime between steps), ``harness_options`` (for
    ``open_jobs``). Override :meth:`time_steps` to choose how far time jumps.
    """

    registry: ClassVar[Registry | None] = None
    job: ClassVar[JobDefinition | None] = None
    failures: ClassVar[FailurePlan | None] = None
    store: ClassVar[str] = "memory://"
    instance_ids: ClassVar[Sequence[str]] = ("a", "b")
    start: ClassVar[datetime] = VIRTUAL_EPOCH
    restarts: ClassVar[bool] = True
    harness_options: ClassVar[Mapping[str, Any]] = {}
    #: The longest ``advance`` (None: three times the job's longest own duration).
    max_advance: ClassVar[timedelta | None] = None

    kind: ClassVar[str] = ""
    model: ContinuousModel | DebounceModel | TaskModel

    def __init__(self) -> None:
        super().__init__()
        registry, job = self._configured()
        # The model first: it can refuse the configuration too (a missing model
        # hook), and must do so before a runtime is open in the loop thread.
        self.model = self._make_model(job, self.start)
        self._tmp: str | None = None
        self._records_seen = 0
        url = self.store
        if "{tmp}" in url:
            self._tmp = tempfile.mkdtemp(prefix="durable-jobs-")
        url = url.replace("{tmp}", self._tmp or "").replace("{unique}", secrets.token_hex(6))
        if self.failures is not None:
            self.failures.clear()
        self._tracebacks = _Tracebacks()
        try:
            if type(self).setup_store is not JobMachine.setup_store:
                open_store(url).close()  # the jobs' tables first: the store wants them so
                self.setup_store(url)
            self.driver = HarnessThread(
                registry, url, start=self.start, **dict(self.harness_options)
            )
        except BaseException:
            self._remove_tmp()
            raise
        _RUNTIME_LOG.addHandler(self._tracebacks)

    def _configured(self) -> tuple[Registry, JobDefinition]:
        name = type(self).__name__
        registry, job = self.registry, self.job
        if not isinstance(registry, Registry) or not isinstance(job, JobDefinition):
            msg = (
                f"{name} needs the class attributes `registry` (your durable_jobs.Registry) and "
                f"`job` (the {self.kind} job definition the decorator returned)."
            )
            raise ConfigurationError(msg)
        if job.kind != self.kind:
            msg = f"{name} tests {self.kind} jobs; {job!r} is a {job.kind} job."
            raise ConfigurationError(msg)
        if registry.get(job.kind, job.name) is not job:
            msg = f"{name}: {job!r} is not the job of that name in {registry!r}."
            raise ConfigurationError(msg)
        hook = job.retry.on_exhausted if job.retry is not None else None
        if hook is not None and not isinstance(hook, str):
            msg = (
                f"{name}: the model cannot tell what the on_exhausted hook of {job!r} decides; "
                "give the job a string policy ('terminate', 'pause' or 'continue') to test it "
                "with a machine."
            )
            raise ConfigurationError(msg)
        return registry, job

    def setup_store(self, url: str) -> None:
        """Prepare each example's fresh store before the jobs open it: override to create
        what the handlers need in it (the table ``ctx.execute`` writes to, say).

        ``url`` is ``store`` with ``{tmp}`` and ``{unique}`` filled in. The jobs'
        own tables are already there (a SQLite file that holds other tables first
        is refused); the runtime is not open yet. Does nothing by default.
        """
        return

    def _make_model(
        self, job: JobDefinition, now: datetime
    ) -> ContinuousModel | DebounceModel | TaskModel:
        raise NotImplementedError

    def _remove_tmp(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def teardown(self) -> None:
        """Stop the runtime and the loop thread; remove the temporary store."""
        try:
            self.driver.close()
        finally:
            _RUNTIME_LOG.removeHandler(self._tracebacks)
            self._remove_tmp()

    # -- strategies (override to taste) --

    def time_steps(self) -> st.SearchStrategy[timedelta]:
        """How far one ``advance`` (or a restart's time down) moves time: the job's own
        durations, or anything up to three times the longest, in whole seconds.

        With ``max_advance`` set, no step is longer: durations of the job above
        it are left out, and ``max_advance`` itself is one of the marks.
        """
        marks = {d for d in self._characteristic_durations() if d >= timedelta(0)}
        if self.max_advance is not None:
            longest = self.max_advance
            marks = {d for d in marks if d <= longest} | {longest}
        else:
            longest = 3 * max(marks)
        ordered = sorted(marks)
        return st.sampled_from(ordered) | djst.durations(timedelta(0), longest)

    def _characteristic_durations(self) -> list[timedelta]:
        marks = [timedelta(0), timedelta(seconds=1)]
        job = self.job
        retry = job.retry if job is not None else None
        if retry is not None:
            marks += [retry.delay.delay(n) for n in range(1, min(retry.max_attempts, 4) + 1)]
        return marks

    def ids(self) -> st.SearchStrategy[str]:
        """The instance ids commands use (``instance_ids``)."""
        return djst.instance_ids(pool=self.instance_ids)

    def failure_handlers(self) -> list[str]:
        """The handlers a planned failure may target."""
        return ["execute"]

    # -- talking to the runtime --

    def _client(self, harness: Harness) -> Any:
        raise NotImplementedError

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``self.driver.call(fn, *args)``; then an AssertionError if one of the job's
        handlers raised meanwhile without a planned failure (see :func:`_handler_errors`)."""
        result = self.driver.call(fn, *args)
        records = self.driver.harness.records
        new, self._records_seen = records[self._records_seen :], len(records)
        job = self.job
        assert job is not None
        errors = _handler_errors(job, new, self._tracebacks.found)
        if errors:
            raise AssertionError(errors)
        return result

    def _now(self) -> datetime:
        async def now(harness: Harness) -> datetime:
            return harness.now()

        return self.driver.call(now)

    # -- common rules --

    @rule(delta=_runner_strategy("time_steps"))
    def advance(self, delta: timedelta) -> None:
        """Let ``delta`` of virtual time pass; every alarm due meanwhile runs."""

        async def run(harness: Harness) -> None:
            await harness.advance(delta)

        self._call(run)
        self.model.advance(self.model.now + delta)

    @precondition(lambda self: self.restarts)
    @rule(down_for=st.just(timedelta(0)) | _runner_strategy("time_steps"))
    def restart(self, down_for: timedelta) -> None:
        """Stop the runtime and start it again on the same store (after ``down_for``)."""

        async def run(harness: Harness) -> None:
            await harness.restart(down_for=down_for)

        self._call(run)
        self.model.advance(self.model.now + down_for, running=False)
        self.model.settle()

    @precondition(lambda self: self.failures is not None)
    @rule(
        instance_id=_runner_strategy("ids"),
        times=st.integers(1, 3),
        handler=_runner_strategy("_handlers"),
    )
    def fail_next(self, instance_id: str, times: int, handler: str) -> None:
        """Plan failures of the next ``times`` calls of ``handler`` for ``instance_id``."""
        assert self.failures is not None
        self.failures.fail_next(instance_id, times, handler=handler)
        self.model.failures.plan(instance_id, times, handler)

    def _handlers(self) -> st.SearchStrategy[str]:
        return st.sampled_from(self.failure_handlers())

    # -- checks --

    def _observe(self, harness: Harness, instance_id: str) -> Any:
        raise NotImplementedError

    def _expected(self, instance_id: str) -> dict[str, Any]:
        raise NotImplementedError

    @invariant()
    def matches_the_model(self) -> None:
        """Status, state, runs (and flushes), time and consumed failures agree with the model."""
        ids = list(self.instance_ids)
        job_name = self.model.job_name
        handler = None if self.kind == "task" else "execute"

        async def observe(harness: Harness) -> tuple[datetime, dict[str, Any]]:
            seen: dict[str, Any] = {}
            for instance_id in ids:
                seen[instance_id] = await self._observe(harness, instance_id)
                seen[instance_id]["runs"] = [
                    (r.handler, r.run_count, r.attempt, r.outcome, r.at)
                    for r in harness.runs(job_name, instance_id, handler=handler)
                ]
                if self.kind == "debounce":
                    seen[instance_id]["flushes"] = [
                        (f.reason, f.event_count) for f in harness.flushes(job_name, instance_id)
                    ]
            return harness.now(), seen

        now, seen = self.driver.call(observe)
        if self.failures is not None:
            for instance_id in ids:
                for handler_name in self.failure_handlers():
                    left = self.failures.pending(instance_id, handler=handler_name)
                    want = self.model.failures.pending(instance_id, handler_name)
                    assert left == want, (
                        f"instance {instance_id!r}: {left} planned failure(s) of {handler_name} "
                        f"are left, the model expects {want}. Does the handler call "
                        f"failures.check(ctx{'' if handler_name == 'execute' else ', ' + repr(handler_name)}) first thing?"  # noqa: E501
                    )

        assert now == self.model.now, f"the jobs' clock reads {now}, the model {self.model.now}"
        for instance_id in ids:
            expected = self._expected(instance_id)
            expected["runs"] = [_run_tuple(r) for r in self.model.runs.get(instance_id, [])]
            if self.kind == "debounce":
                assert isinstance(self.model, DebounceModel)
                expected["flushes"] = list(self.model.flushes.get(instance_id, []))
            for what, value in expected.items():
                if value is UNKNOWN:
                    continue
                got = seen[instance_id][what]
                # repr: NaN is a storable float that equals nothing, not even itself.
                assert got == value or repr(got) == repr(value), (
                    f"instance {instance_id!r}: {what} is {_fmt(got)}, the model expects "
                    f"{_fmt(value)}"
                )


#: The error type a run_failed record gives a FailurePlan failure.
_INJECTED = f"{InjectedFailure.__module__}.{InjectedFailure.__qualname__}"


#: The runtime's logger: it logs each failed handler call with its traceback.
_RUNTIME_LOG = logging.getLogger("durable_jobs.runtime")

#: The last lines of a traceback a report shows (the handler's own frames are last).
_TRACEBACK_LINES = 12

_RunKey = tuple[str, str, str, int, int]


class _Tracebacks(logging.Handler):
    """Keeps the traceback of each failed handler call the runtime logs, by (kind, job,
    instance id, run, attempt): the history keeps only the exception's type and message."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.found: dict[_RunKey, str] = {}
        self._format = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        fields = vars(record)
        run, attempt = fields.get("dj_run_count"), fields.get("dj_attempt")
        if record.exc_info is None or not isinstance(run, int) or not isinstance(attempt, int):
            return
        kind, job, instance_id = (
            str(fields.get(name)) for name in ("dj_kind", "dj_job", "dj_instance_id")
        )
        self.found[kind, job, instance_id, run, attempt] = self._format.formatException(
            record.exc_info
        )


def _handler_errors(
    job: JobDefinition,
    records: Sequence[RecordedEvent],
    tracebacks: Mapping[_RunKey, str] | None = None,
) -> str:
    """What ``job``'s handlers raised in ``records`` that no planned failure explains
    (the model knows no other failure: it would only see its consequences), or ''.
    Each comes with the end of its traceback when ``tracebacks`` has it."""
    failed = [
        Run.from_record(r)
        for r in records
        if r.name == "run_failed" and r.kind == job.kind and r.job == job.name
    ]
    lines = []
    for run in failed:
        if run.error_type == _INJECTED:
            continue
        lines.append(
            f"  - {run.handler} of instance {run.instance_id!r} (run {run.run_count}, attempt "
            f"{run.attempt}, at {run.at.isoformat()}) raised {run.error_type}: {run.error}"
        )
        key = (job.kind, job.name, run.instance_id, run.run_count, run.attempt)
        text = (tracebacks or {}).get(key)
        if text:
            tail = text.rstrip("\n").splitlines()[-_TRACEBACK_LINES:]
            lines += ["      " + line for line in tail]
    if not lines:
        return ""
    listed = "\n".join(lines)
    return (
        f"a handler of {job.kind} job {job.name!r} raised, and no planned failure "
        f"(FailurePlan) explains it (the model expects a call to fail only when a failure "
        f"is planned for it):\n{listed}\nFix the handler for these inputs (the steps "
        "below reproduce it), or keep such inputs out of the machine's strategies."
    )


def _run_tuple(run: ExpectedRun) -> tuple[str, int, int, str, datetime]:
    return (run.handler, run.run_count, run.attempt, run.outcome, run.at)
