"""hypothesis state machines that check a registered job against a reference model.

Needs hypothesis (``pip install durable-jobs[testing]``). Subclass the
machine of your job's kind, name your registry and job, and hand the
``TestCase`` to pytest::

    class HeartbeatMachine(ContinuousMachine):
        registry = registry
        job = heartbeat
        failures = failures          # the FailurePlan the handler consults

        def model_execute(self, state: int, ctx: ModelContext) -> int:
            return state + 1         # what heartbeat does to its state

    TestHeartbeat = HeartbeatMachine.TestCase

Each example opens the job's registry on a fresh store (``store``; ``{tmp}``
in it is a new temporary directory, ``{unique}`` a new random token) in
virtual time, and plays random interleavings of client calls, time advances,
planned handler failures and restarts. After every step it compares what the
runtime says (status, state, the runs and flushes in the log, the time) with
a small model of the library's documented semantics (:mod:`durable_jobs.testing._models`), and
fails with the shrunk sequence of steps, as hypothesis does.

trio runs in a helper thread (``trio.from_thread``); virtual time moves only
inside a step, so nothing runs behind hypothesis's back.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

try:
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
except ImportError as exc:  # pragma: no cover - the testing extra is missing
    msg = (
        "durable_jobs.testing.machines needs hypothesis: install the testing extra, "
        "`pip install durable-jobs[testing]`."
    )
    raise ImportError(msg) from exc

from durable_jobs._definitions.jobs import ContinuousJob, DebounceJob, JobDefinition, TaskJob
from durable_jobs._definitions.registry import Registry
from durable_jobs._errors import ConfigurationError, HandlerError
from durable_jobs._runtime.clock import VIRTUAL_EPOCH
from durable_jobs.testing import strategies as djst
from durable_jobs.testing._driver import HarnessThread
from durable_jobs.testing._harness import FailurePlan, Harness
from durable_jobs.testing._models import (
    TERMINATE,
    UNCHANGED,
    UNKNOWN,
    ContinuousModel,
    DebounceModel,
    ExpectedRun,
    ModelContext,
    TaskModel,
    TaskStep,
    TaskView,
)

__all__ = [
    "TERMINATE",
    "UNCHANGED",
    "ContinuousMachine",
    "DebounceMachine",
    "JobMachine",
    "ModelContext",
    "TaskMachine",
    "TaskStep",
    "TaskView",
]


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
    ``store`` (default ``memory://``), ``instance_ids`` (the ids the commands
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
        self._tmp: str | None = None
        url = self.store
        if "{tmp}" in url:
            self._tmp = tempfile.mkdtemp(prefix="durable-jobs-")
        url = url.replace("{tmp}", self._tmp or "").replace("{unique}", secrets.token_hex(6))
        if self.failures is not None:
            self.failures.clear()
        try:
            self.driver = HarnessThread(
                registry, url, start=self.start, **dict(self.harness_options)
            )
        except BaseException:
            self._remove_tmp()
            raise
        self.model = self._make_model(job, self.start)

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

        self.driver.call(run)
        self.model.advance(self.model.now + delta)

    @precondition(lambda self: self.restarts)
    @rule(down_for=st.just(timedelta(0)) | _runner_strategy("time_steps"))
    def restart(self, down_for: timedelta) -> None:
        """Stop the runtime and start it again on the same store (after ``down_for``)."""

        async def run(harness: Harness) -> None:
            await harness.restart(down_for=down_for)

        self.driver.call(run)
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


def _run_tuple(run: ExpectedRun) -> tuple[str, int, int, str, datetime]:
    return (run.handler, run.run_count, run.attempt, run.outcome, run.at)


# ---- continuous --------------------------------------------------------------------------


class ContinuousMachine(JobMachine):
    """Drives a continuous job: ``start``, ``trigger``, ``terminate``, time, failures, restarts.

    Override :meth:`model_execute` to check the state too; :meth:`inputs`
    chooses ``start``'s input (default: values of the job's state type).
    """

    kind: ClassVar[str] = "continuous"
    model: ContinuousModel

    def model_execute(self, state: Any, ctx: ModelContext) -> Any:
        """What ``execute`` makes of ``state`` when it succeeds (or :data:`TERMINATE`).

        Not overridden: the state is only checked until the first successful run.
        """
        raise NotImplementedError

    def inputs(self) -> st.SearchStrategy[Any]:
        """``start`` inputs: values of the job's state type."""
        assert self.job is not None
        return djst.states_for(self.job)

    def _make_model(self, job: JobDefinition, now: datetime) -> ContinuousModel:
        assert isinstance(job, ContinuousJob)
        hook = None
        if type(self).model_execute is not ContinuousMachine.model_execute:
            hook = self.model_execute
        return ContinuousModel(job, now, execute=hook)

    def _characteristic_durations(self) -> list[timedelta]:
        marks = super()._characteristic_durations()
        schedule = getattr(self.job, "schedule", None)
        duration = getattr(schedule, "duration", None)
        if isinstance(duration, timedelta):
            marks += [duration, duration / 2, 2 * duration]
        else:
            marks += [timedelta(hours=1), timedelta(days=1)]
        return marks

    def _client(self, harness: Harness) -> Any:
        assert isinstance(self.job, ContinuousJob)
        return harness.continuous(self.job)

    @rule(instance_id=_runner_strategy("ids"), value=_runner_strategy("inputs"))
    def start_instance(self, instance_id: str, value: Any) -> None:
        """``start(id, input)``."""

        async def run(harness: Harness) -> Any:
            result = await self._client(harness).start(instance_id, value)
            await harness.wait_idle()
            return result

        result = self.driver.call(run)
        created, status = self.model.start(instance_id, value)
        assert (result.created, result.status) == (created, status), (
            f"start({instance_id!r}) gave {result}, the model expects created={created}, "
            f"status={status}"
        )
        self.model.settle()

    @rule(instance_id=_runner_strategy("ids"))
    def trigger(self, instance_id: str) -> None:
        """``trigger(id)``: runs now and reports the outcome."""

        async def run(harness: Harness) -> Any:
            result = await self._client(harness).trigger(instance_id)
            await harness.wait_idle()
            return result

        result = self.driver.call(run)
        expected = self.model.trigger(instance_id)
        assert result == expected, f"trigger({instance_id!r}) gave {result}, expected {expected}"
        self.model.settle()

    @rule(instance_id=_runner_strategy("ids"))
    def terminate(self, instance_id: str) -> None:
        """``terminate(id)``."""

        async def run(harness: Harness) -> Any:
            return await self._client(harness).terminate(instance_id)

        result = self.driver.call(run)
        expected = self.model.terminate(instance_id)
        assert result.terminated == expected, (
            f"terminate({instance_id!r}) gave {result}, expected terminated={expected}"
        )

    async def _observe(self, harness: Harness, instance_id: str) -> dict[str, Any]:
        client = self._client(harness)
        return {
            "status": await client.status(instance_id),
            "state": await client.get_state(instance_id),
        }

    def _expected(self, instance_id: str) -> dict[str, Any]:
        return {
            "status": self.model.status(instance_id),
            "state": self.model.get_state(instance_id),
        }


# ---- debounce ----------------------------------------------------------------------------


class DebounceMachine(JobMachine):
    """Drives a debounce job: ``add`` (with repeated idempotency keys), ``flush``, ``clear``,
    time, failures of the flush, restarts. Its model covers both windows (``fixed``
    and ``sliding``, with or without ``max_wait``).

    If the job has an ``on_event`` reducer, override :meth:`model_reduce` to
    check the state too. :meth:`events` chooses the events (default: values
    of the job's event type).
    """

    kind: ClassVar[str] = "debounce"
    model: DebounceModel
    #: The idempotency keys ``add`` may use (None among them: no key).
    idempotency_keys: ClassVar[Sequence[str]] = ("k1", "k2")

    def model_reduce(self, state: Any, event: Any, event_count: int) -> Any:
        """What the reducer returns for ``event`` on ``state`` (None for a batch's first event)."""
        raise NotImplementedError

    def events(self) -> st.SearchStrategy[Any]:
        assert isinstance(self.job, DebounceJob)
        return djst.events_for(self.job)

    def keys(self) -> st.SearchStrategy[str | None]:
        return st.none() | st.sampled_from(list(self.idempotency_keys))

    def _make_model(self, job: JobDefinition, now: datetime) -> DebounceModel:
        assert isinstance(job, DebounceJob)
        hook = None
        if type(self).model_reduce is not DebounceMachine.model_reduce:
            hook = self.model_reduce
        return DebounceModel(job, now, reduce=hook)

    def _characteristic_durations(self) -> list[timedelta]:
        job = self.job
        assert isinstance(job, DebounceJob)
        fa = job.flush_after
        marks = [*super()._characteristic_durations(), fa, fa / 2, 2 * fa]
        if job.window == "sliding":
            # Just inside the quiet period (the window slides), and the cap.
            marks.append(fa - min(fa / 10, timedelta(seconds=1)))
            if job.max_wait is not None:
                marks.append(job.max_wait)
        return marks

    def _client(self, harness: Harness) -> Any:
        assert isinstance(self.job, DebounceJob)
        return harness.debounce(self.job)

    @rule(
        instance_id=_runner_strategy("ids"),
        event=_runner_strategy("events"),
        key=_runner_strategy("keys"),
    )
    def add(self, instance_id: str, event: Any, key: str | None) -> None:
        """``add(id, event, idempotency_key)``."""

        async def run(harness: Harness) -> Any:
            result = await self._client(harness).add(instance_id, event, idempotency_key=key)
            await harness.wait_idle()
            return result

        result = self.driver.call(run)
        expected = self.model.add(instance_id, event, key)
        assert result == expected, f"add({instance_id!r}, ...) gave {result}, expected {expected}"
        self.model.settle()

    @rule(instance_id=_runner_strategy("ids"))
    def flush(self, instance_id: str) -> None:
        """``flush(id)``: flushes the next batch now."""

        async def run(harness: Harness) -> Any:
            result = await self._client(harness).flush(instance_id)
            await harness.wait_idle()
            return result

        result = self.driver.call(run)
        expected = self.model.flush(instance_id)
        assert result == expected, f"flush({instance_id!r}) gave {result}, expected {expected}"
        self.model.settle()

    @rule(instance_id=_runner_strategy("ids"))
    def clear(self, instance_id: str) -> None:
        """``clear(id)``."""

        async def run(harness: Harness) -> Any:
            return await self._client(harness).clear(instance_id)

        result = self.driver.call(run)
        expected = self.model.clear(instance_id)
        assert result == expected, f"clear({instance_id!r}) gave {result}, expected {expected}"

    async def _observe(self, harness: Harness, instance_id: str) -> dict[str, Any]:
        client = self._client(harness)
        return {
            "status": await client.status(instance_id),
            "state": await client.get_state(instance_id),
        }

    def _expected(self, instance_id: str) -> dict[str, Any]:
        return {
            "status": self.model.status(instance_id),
            "state": self.model.get_state(instance_id),
        }


# ---- task --------------------------------------------------------------------------------


class TaskMachine(JobMachine):
    """Drives a task job: ``send`` (with repeated idempotency keys), ``trigger``,
    ``terminate``, time, failures of any handler, restarts.

    A task's handlers decide its alarms, so the model needs to know what
    they do: override :meth:`model_on_event` and :meth:`model_execute` (and
    :meth:`model_on_idle` / :meth:`model_on_error` if the job has those
    handlers). Each returns a :class:`TaskStep`: the context calls the
    handler makes, given a :class:`TaskView` of its context.
    """

    kind: ClassVar[str] = "task"
    model: TaskModel
    idempotency_keys: ClassVar[Sequence[str]] = ("k1", "k2")
    #: A task's handlers choose its alarms: set this to the scale of yours.
    max_advance: ClassVar[timedelta | None] = timedelta(hours=1)

    def model_on_event(self, event: Any, view: TaskView) -> TaskStep:
        """What ``on_event(event, ctx)`` does."""
        raise NotImplementedError

    def model_execute(self, view: TaskView) -> TaskStep:
        """What ``execute(ctx)`` does."""
        raise NotImplementedError

    def model_on_idle(self, view: TaskView) -> TaskStep:
        """What ``on_idle(ctx)`` does."""
        raise NotImplementedError

    def model_on_error(self, failed_handler: str, view: TaskView) -> TaskStep:
        """What ``on_error(error, ctx)`` does after ``failed_handler`` raised."""
        raise NotImplementedError

    def events(self) -> st.SearchStrategy[Any]:
        assert isinstance(self.job, TaskJob)
        return djst.events_for(self.job)

    def keys(self) -> st.SearchStrategy[str | None]:
        return st.none() | st.sampled_from(list(self.idempotency_keys))

    def failure_handlers(self) -> list[str]:
        job = self.job
        assert isinstance(job, TaskJob)
        handlers = ["on_event", "execute"]
        if job.idle_handler is not None:
            handlers.append("on_idle")
        if job.error_handler is not None:
            handlers.append("on_error")
        return handlers

    def _characteristic_durations(self) -> list[timedelta]:
        return [*super()._characteristic_durations(), timedelta(minutes=1), timedelta(days=1)]

    def _make_model(self, job: JobDefinition, now: datetime) -> TaskModel:
        assert isinstance(job, TaskJob)
        hooks: dict[str, Any] = {}
        needed = {"on_event": True, "execute": True}
        needed["on_idle"] = job.idle_handler is not None
        needed["on_error"] = job.error_handler is not None
        for handler, required in needed.items():
            method = getattr(type(self), f"model_{handler}")
            if method is getattr(TaskMachine, f"model_{handler}"):
                if required:
                    msg = (
                        f"{type(self).__name__}: override model_{handler}() to say what the "
                        f"{handler} handler of {job!r} does (return a TaskStep)."
                    )
                    raise ConfigurationError(msg)
                continue
            hooks[handler] = getattr(self, f"model_{handler}")
        return TaskModel(job, now, hooks)

    def _client(self, harness: Harness) -> Any:
        assert isinstance(self.job, TaskJob)
        return harness.task(self.job)

    def _call_expecting(self, what: str, call: Any, expected: Any) -> None:
        """Run ``call``; it must raise HandlerError if ``expected`` is an error, else match."""

        async def run(harness: Harness) -> Any:
            try:
                result = await call(harness)
            except HandlerError as exc:
                result = exc
            await harness.wait_idle()
            return result

        result = self.driver.call(run)
        if isinstance(expected, BaseException):
            assert isinstance(result, HandlerError), (
                f"{what} gave {result}, the model expects a HandlerError"
            )
        else:
            assert result == expected, f"{what} gave {result!r}, expected {expected!r}"
        self.model.settle()

    @rule(
        instance_id=_runner_strategy("ids"),
        event=_runner_strategy("events"),
        key=_runner_strategy("keys"),
    )
    def send(self, instance_id: str, event: Any, key: str | None) -> None:
        """``send(id, event, idempotency_key)``."""
        expected = self.model.send(instance_id, event, key)
        self._call_expecting(
            f"send({instance_id!r}, ...)",
            lambda h: self._client(h).send(instance_id, event, idempotency_key=key),
            expected,
        )

    @rule(instance_id=_runner_strategy("ids"))
    def trigger(self, instance_id: str) -> None:
        """``trigger(id)``: runs ``execute`` now."""
        expected = self.model.trigger(instance_id)
        self._call_expecting(
            f"trigger({instance_id!r})", lambda h: self._client(h).trigger(instance_id), expected
        )

    @rule(instance_id=_runner_strategy("ids"))
    def terminate(self, instance_id: str) -> None:
        """``terminate(id)``."""

        async def run(harness: Harness) -> Any:
            return await self._client(harness).terminate(instance_id)

        result = self.driver.call(run)
        expected = self.model.terminate(instance_id)
        assert result.terminated == expected, (
            f"terminate({instance_id!r}) gave {result}, expected terminated={expected}"
        )

    async def _observe(self, harness: Harness, instance_id: str) -> dict[str, Any]:
        client = self._client(harness)
        return {
            "status": await client.status(instance_id),
            "state": await client.get_state(instance_id),
        }

    def _expected(self, instance_id: str) -> dict[str, Any]:
        return {
            "status": self.model.status(instance_id),
            "state": self.model.get_state(instance_id),
        }
