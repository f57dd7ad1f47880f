"""hypothesis state machines that check a registered job against a reference model.

Needs hypothesis (``pip install 'durable-jobs[testing]'``). Subclass the
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

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

try:
    from hypothesis import strategies as st
    from hypothesis.stateful import rule
except ImportError as exc:  # pragma: no cover - the testing extra is missing
    msg = (
        "durable_jobs.testing.machines needs hypothesis: install the testing extra, "
        "`pip install 'durable-jobs[testing]'`."
    )
    raise ImportError(msg) from exc

from durable_jobs._definitions.jobs import ContinuousJob, DebounceJob, JobDefinition, TaskJob
from durable_jobs._errors import BacklogFull, ConfigurationError, HandlerError
from durable_jobs.testing import strategies as djst
from durable_jobs.testing._harness import Harness
from durable_jobs.testing._machines_base import JobMachine, _runner_strategy
from durable_jobs.testing._models import (
    TERMINATE,
    UNCHANGED,
    ContinuousModel,
    DebounceModel,
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

        result = self._call(run)
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

        result = self._call(run)
        expected = self.model.trigger(instance_id)
        assert result == expected, f"trigger({instance_id!r}) gave {result}, expected {expected}"
        self.model.settle()

    @rule(instance_id=_runner_strategy("ids"))
    def terminate(self, instance_id: str) -> None:
        """``terminate(id)``."""

        async def run(harness: Harness) -> Any:
            return await self._client(harness).terminate(instance_id)

        result = self._call(run)
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

        result: Any
        expected: Any
        try:
            result = self._call(run)
        except BacklogFull:
            result = BacklogFull
        try:
            expected = self.model.add(instance_id, event, key)
        except BacklogFull:
            expected = BacklogFull
        assert result == expected, f"add({instance_id!r}, ...) gave {result}, expected {expected}"
        self.model.settle()

    @rule(instance_id=_runner_strategy("ids"))
    def flush(self, instance_id: str) -> None:
        """``flush(id)``: flushes the next batch now."""

        async def run(harness: Harness) -> Any:
            result = await self._client(harness).flush(instance_id)
            await harness.wait_idle()
            return result

        result = self._call(run)
        expected = self.model.flush(instance_id)
        assert result == expected, f"flush({instance_id!r}) gave {result}, expected {expected}"
        self.model.settle()

    @rule(instance_id=_runner_strategy("ids"))
    def clear(self, instance_id: str) -> None:
        """``clear(id)``."""

        async def run(harness: Harness) -> Any:
            return await self._client(harness).clear(instance_id)

        result = self._call(run)
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

        result = self._call(run)
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

        result = self._call(run)
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
