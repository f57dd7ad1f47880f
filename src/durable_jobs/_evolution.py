"""Stored type versions checked against the code's job definitions.

Every state and event JSON an instance holds records the job's ``version`` it
was written with. Reading it brings it to the code's version with the job's
upcasters (see :class:`~durable_jobs._registry.TypeCodec`). Two checks use
that:

* :func:`refuse_unreadable_versions` (run by ``open_jobs`` before any run)
  refuses a store holding live instances of a version no upcaster chain
  leads from, or of a version newer than the code's (a rollback);
* :func:`check_instances` (``Inspector.check``, ``durable-jobs check``)
  decodes every live instance's state and pending batches with the code
  and lists those that would fail.

Both only read.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast, final

from durable_jobs._domain.debounce import DebounceInstance
from durable_jobs._domain.ids import Kind
from durable_jobs._domain.instance import JobInstance
from durable_jobs._errors import ConfigurationError, DurableJobsError, StoreError
from durable_jobs._registry import JobDefinition, Registry, TypeCodec
from durable_jobs._store.base import Store
from durable_jobs._store.crypto import EncryptedRowError

__all__ = [
    "CheckFailure",
    "CheckReport",
    "check_instances",
    "held_json",
    "refuse_unreadable_versions",
]

log = logging.getLogger("durable_jobs.evolution")


def held_json(agg: JobInstance) -> Iterator[tuple[str, Any, int]]:
    """``(what, json, type_version)`` of every user JSON a live instance still reads.

    The state, and for debounce the state of each closed batch and of the open
    batch. Terminated instances hold none; ``None`` (no state) needs no version.
    """
    d = agg.d
    if not d.live:
        return
    if isinstance(agg, DebounceInstance):
        for batch in d.closed:
            if batch.state is not None:
                yield f"batch {batch.batch_no}", batch.state, batch.state_version
        if d.event_count and d.state is not None:
            yield "open batch", d.state, d.state_version
    elif d.state is not None:
        yield "state", d.state, d.state_version


def _live(store: Store, registry: Registry) -> Iterator[tuple[JobDefinition, JobInstance]]:
    """Every live instance of a registered job, rebuilt (unreadable logs are skipped)."""
    for row in store.iter_instances():
        if row.status == "terminated":
            continue
        try:
            job = registry.get(cast("Kind", row.kind), row.job)
        except DurableJobsError:
            continue  # not this code's job: nothing to check against
        try:
            agg = store.get_by_uuid(row.instance_uuid)
        except StoreError as exc:
            if isinstance(exc.__cause__, EncryptedRowError):
                raise  # no key, or not the right one: nothing can be read
            log.warning("Skipping %s job %r instance: %s", row.kind, row.job, exc)
            continue
        if agg is not None:
            yield job, agg


def refuse_unreadable_versions(store: Store, registry: Registry) -> None:
    """Raise :class:`ConfigurationError` if the store holds live instances of a job
    version the code cannot read: newer than the job's ``version``, or older with
    an upcaster missing on the way. Names the job, the stored versions and what
    is missing. Reads each live instance once; writes nothing.
    """
    found: dict[JobDefinition, Counter[int]] = {}
    for job, agg in _live(store, registry):
        versions = {version for _, _, version in held_json(agg)}
        if any(v != job.version for v in versions):
            counts = found.setdefault(job, Counter())
            counts.update(versions)
    problems: list[str] = []
    for job, counts in found.items():
        stored = ", ".join(
            f"version {v} ({n} instance{'s' * (n > 1)})" for v, n in sorted(counts.items())
        )
        label = f"{job.kind} job {job.name!r} (code: version {job.version}; stored: {stored})"
        newer = sorted(v for v in counts if v > job.version)
        if newer:
            problems.append(
                f"{label} holds data written by a newer version ({', '.join(map(str, newer))}): "
                "the code was rolled back; deploy the newer code again"
            )
            continue
        missing = sorted({m for v in counts for m in job.missing_upcasters(v)})
        if missing:
            problems.append(f"{label} has no upcaster {', '.join('@job.' + m for m in missing)}")
    if problems:
        msg = (
            "The store holds instances this code cannot read: "
            + "; ".join(problems)
            + ". Nothing was run."
        )
        raise ConfigurationError(msg)


@final
@dataclass(frozen=True, kw_only=True)
class CheckFailure:
    """One stored JSON of a live instance that the code cannot read."""

    kind: str
    job: str
    instance_id: str
    #: ``state``, ``open batch`` or ``batch N`` (debounce).
    what: str
    #: The job version the JSON was written with.
    type_version: int
    problem: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "job": self.job,
            "instance_id": self.instance_id,
            "what": self.what,
            "type_version": self.type_version,
            "problem": self.problem,
        }


@final
@dataclass(frozen=True, kw_only=True)
class CheckReport:
    """What :meth:`Inspector.check` found: ``ok`` when every live instance reads."""

    #: Live instances of registered jobs that were decoded.
    checked: int
    failures: list[CheckFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "failures": [f.to_json() for f in self.failures],
        }


def _problem(codec: TypeCodec[Any], data: Any, version: int) -> str | None:
    try:
        codec.read(data, version)
    except Exception as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return text if len(text) <= 500 else text[:497] + "..."
    return None


def check_instances(store: Store, registry: Registry) -> CheckReport:
    """Decode every live instance's state and pending batches with the code's types
    and upcasters; list those that fail. Writes nothing."""
    checked = 0
    failures: list[CheckFailure] = []
    for job, agg in _live(store, registry):
        checked += 1
        for what, data, version in held_json(agg):
            problem = _problem(job.state_codec, data, version)
            if problem is not None:
                failures.append(
                    CheckFailure(
                        kind=job.kind,
                        job=job.name,
                        instance_id=agg.d.instance_id,
                        what=what,
                        type_version=version,
                        problem=problem,
                    )
                )
    return CheckReport(checked=checked, failures=failures)
