"""Stored type versions checked against the code's job definitions.

Every state and event JSON an instance holds records the job's ``version`` it
was written with. Reading it brings it to the code's version with the job's
upcasters (see :class:`~durable_jobs._definitions.codecs.TypeCodec`). Two checks use
that:

* :func:`refuse_unreadable_versions` (run by ``open_jobs`` before any run)
  refuses a store holding live instances of a version no upcaster chain
  leads from, or of a version newer than the code's (a rollback), then (as
  :func:`refuse_missing_upcasters`) a job whose chain from version 1 has a
  gap, whatever the store holds;
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
from typing import Any, final

from durable_jobs._definitions.codecs import TypeCodec
from durable_jobs._definitions.jobs import JobDefinition
from durable_jobs._definitions.registry import Registry
from durable_jobs._domain.ids import KINDS
from durable_jobs._domain.instance import JobInstance
from durable_jobs._errors import ConfigurationError, StoreError
from durable_jobs._store.base import Store
from durable_jobs._store.crypto import EncryptedRowError
from durable_jobs._telemetry import log_fields

__all__ = [
    "CheckFailure",
    "CheckReport",
    "check_instances",
    "refuse_missing_upcasters",
    "refuse_unreadable_versions",
]

log = logging.getLogger("durable_jobs.evolution")


def _jobs(registry: Registry) -> list[JobDefinition]:
    return [registry.get(kind, name) for kind in KINDS for name in registry.names(kind)]


def _live(
    store: Store, registry: Registry, jobs: list[JobDefinition] | None = None
) -> Iterator[tuple[JobDefinition, JobInstance]]:
    """Every live instance of ``jobs`` (default: all the registry's), rebuilt.

    Logs that cannot be read are skipped with a warning, except when they
    cannot be decrypted: that is a wrong or missing key, and raises.
    """
    for job in _jobs(registry) if jobs is None else jobs:
        for row in store.iter_instances(kind=job.kind, job=job.name):
            if row.status == "terminated":
                continue
            try:
                agg = store.get_by_uuid(row.instance_uuid)
            except StoreError as exc:
                if isinstance(exc.__cause__, EncryptedRowError):
                    raise  # no key, or not the right one: nothing can be read
                log.warning(
                    "Skipping %s job %r instance %r: %s",
                    row.kind,
                    row.job,
                    row.instance_id,
                    exc,
                    extra=log_fields(row.kind, row.job, row.instance_id),
                )
                continue
            if agg is not None:
                yield job, agg


def _named(missing: list[str]) -> str:
    """Missing upcasters (``JobDefinition.missing_upcasters``) as a message names them."""
    return ", ".join("@job." + m for m in missing)


def _at_risk(job: JobDefinition, versions: set[int] | None) -> bool:
    """Whether instances of ``versions`` (None: unknown) may be unreadable by ``job``."""
    if versions is None:
        return True
    return any(v > job.version or job.missing_upcasters(v) for v in versions)


def refuse_unreadable_versions(store: Store, registry: Registry) -> None:
    """Raise :class:`ConfigurationError` if the store holds live instances of a job
    version the code cannot read: newer than the job's ``version``, or older with
    an upcaster missing on the way. Names the job, the stored versions and what
    is missing. A :class:`StoreError` if the store's newest row cannot be
    decrypted (a wrong or missing encryption key). Writes nothing.

    The store records every type version ever written (above 1; logs older than
    versions are version 1), so only the instances of jobs for which one of
    those is a problem are read, to find out which ones still hold it.
    """
    store.check_key()
    recorded = store.recorded_type_versions()
    at_risk = [
        job
        for job in _jobs(registry)
        if _at_risk(
            job, None if recorded is None else {1} | recorded.get((job.kind, job.name), set())
        )
    ]
    if not at_risk:
        return
    found: dict[JobDefinition, Counter[int]] = {}
    for job, agg in _live(store, registry, at_risk):
        versions = agg.type_versions()
        if any(v != job.version for v in versions):
            found.setdefault(job, Counter()).update(versions)
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
            problems.append(f"{label} has no upcaster {_named(missing)}")
    if problems:
        msg = (
            "The store holds instances this code cannot read: "
            + "; ".join(problems)
            + ". Nothing was run."
        )
        raise ConfigurationError(msg)
    refuse_missing_upcasters(registry)


def refuse_missing_upcasters(registry: Registry) -> None:
    """Raise :class:`ConfigurationError` if a job at ``version`` N lacks an upcaster
    of a step from 1 to N, even where the store holds no JSON that needs it (yet):
    raising a version needs one per step, even one that returns its input, so a
    missing one is found before the first deploy that meets older data."""
    problems = [
        f"{job.kind} job {job.name!r} is at version {job.version} and has no upcaster "
        + _named(missing)
        for job in _jobs(registry)
        if (missing := job.missing_upcasters(1))
    ]
    if problems:
        msg = (
            "Raising a job's version needs one upcaster per step, even one that returns "
            "its input: " + "; ".join(problems) + ". open_jobs refuses to start without them."
        )
        raise ConfigurationError(msg)


@final
@dataclass(frozen=True, kw_only=True)
class CheckFailure:
    """One stored JSON of a live instance that the code cannot read."""

    kind: str
    job: str
    instance_id: str
    #: ``state``, ``open batch`` or ``batch N`` (debounce), or ``upcasters``: one the
    #: JSON does not need but ``open_jobs`` requires is missing.
    what: str
    #: The job version the JSON was written with.
    type_version: int
    problem: str

    def to_json(self) -> dict[str, Any]:
        """The failure as a JSON object (what ``durable-jobs check --json`` lists)."""
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
        """True when every live instance read with the current code."""
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object (what ``durable-jobs check --json`` prints)."""
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
        failed = False
        for what, data, version in agg.held_json():
            problem = _problem(job.state_codec, data, version)
            if problem is not None:
                failed = True
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
        if failed:
            continue
        # What open_jobs refuses to start without, even where no JSON needs it now (a
        # task's events are handled at send): the check is the deploy's gate, and must
        # not pass what the deploy then refuses.
        for version in sorted({v for v in agg.type_versions() if v < job.version}):
            missing = job.missing_upcasters(version)
            if missing:
                upcasters = _named(missing)
                failures.append(
                    CheckFailure(
                        kind=job.kind,
                        job=job.name,
                        instance_id=agg.d.instance_id,
                        what="upcasters",
                        type_version=version,
                        problem=f"no upcaster {upcasters}: open_jobs refuses to start without it",
                    )
                )
    return CheckReport(checked=checked, failures=failures)
