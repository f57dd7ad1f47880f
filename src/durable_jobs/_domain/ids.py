"""Identity of job instances: names, kinds and deterministic aggregate ids."""

from __future__ import annotations

import functools
import hashlib
import re
from typing import TYPE_CHECKING, Any, Final, Literal, get_args
from uuid import UUID

from durable_jobs._errors import ConfigurationError, ValidationError

__all__ = [
    "KINDS",
    "MAX_INSTANCE_ID_LENGTH",
    "Kind",
    "check_instance_id",
    "check_job_name",
    "identity_problem",
    "instance_uuid",
]

Kind = Literal["continuous", "debounce", "task"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)

#: Namespace of the uuid5 ids of instance aggregates. Never change it: stored logs use it.
NAMESPACE: Final = UUID("6f1d4b8e-8a53-5c2e-9d64-0d6b2a3c9e71")
MAX_INSTANCE_ID_LENGTH: Final = 512
_JOB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")


def check_job_name(name: object) -> str:
    """Return ``name`` if it is a valid job name, else raise :class:`ConfigurationError`.

    Job names are 1-128 characters of letters, digits, ``_``, ``.`` and ``-`` (no ``:``),
    which keeps ``"{kind}:{job}:{instance_id}"`` unambiguous.
    """
    if not isinstance(name, str) or not _JOB_NAME.fullmatch(name):
        msg = (
            f"Invalid job name {name!r}: use 1-128 characters of letters, digits, "
            "'_', '.' and '-', starting with a letter, digit or '_'."
        )
        raise ConfigurationError(msg)
    return name


def check_instance_id(instance_id: object) -> str:
    """Return ``instance_id`` if it is a usable instance id, else raise ValidationError."""
    if not isinstance(instance_id, str):
        msg = f"An instance id must be a str, not {type(instance_id).__name__}: {instance_id!r}"
        raise ValidationError(msg)
    if not instance_id or len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        msg = (
            f"An instance id must be 1-{MAX_INSTANCE_ID_LENGTH} characters long "
            f"(got {len(instance_id)})."
        )
        raise ValidationError(msg)
    if "\x00" in instance_id:
        raise ValidationError("An instance id must not contain NUL characters.")
    try:
        instance_id.encode("utf-8")
    except UnicodeEncodeError:
        msg = (
            f"An instance id must be valid Unicode; {instance_id!r:.80} contains a lone "
            "surrogate, which cannot be stored."
        )
        raise ValidationError(msg) from None
    return instance_id


def check_kind(kind: object) -> Kind:
    """Return ``kind`` if it is one of :data:`KINDS`, else raise ConfigurationError."""
    if kind not in KINDS:
        msg = f"Unknown job kind {kind!r}: expected one of {', '.join(KINDS)}."
        raise ConfigurationError(msg)
    return kind


@functools.lru_cache(maxsize=16384)  # hot: every command and run computes it
def _instance_uuid(kind: Kind, job: str, instance_id: str) -> UUID:
    """The aggregate id of the instance ``instance_id`` of ``job`` (of ``kind``).

    Deterministic, so any process finds the same log: ``uuid5(NAMESPACE,
    f"{kind}:{job}:{instance_id}")``. Job names contain no ``:``, so distinct
    triples give distinct strings.
    """
    # uuid5(NAMESPACE, f"{kind}:{job}:{instance_id}"), with the bytes of the namespace
    # and "{kind}:{job}:" made once per job: a new instance costs half of uuid5's time.
    prefix = _prefixes.get((kind, job))
    if prefix is None:
        prefix = _prefix(kind, job)
    # A copy of the prefix's hash: cheaper than a new hash of the whole (OpenSSL's setup).
    sha1 = prefix.copy()
    sha1.update(instance_id.encode("utf-8"))
    digest = sha1.digest()
    return UUID(int=(int.from_bytes(digest[:16]) & _CLEAR_VERSION) | _VERSION_5)


if TYPE_CHECKING:

    def instance_uuid(kind: Kind, job: str, instance_id: str) -> UUID:
        """See :func:`_instance_uuid`."""
        ...

else:
    # The cache itself (a call served from it runs no Python function).
    instance_uuid = _instance_uuid


#: The version and variant bits of a uuid5 (RFC 4122), as ``uuid.uuid5`` sets them.
_CLEAR_VERSION: Final = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_VERSION_5: Final = (0x8000 << 48) | (5 << 76)
#: The SHA-1 of the namespace's bytes and "{kind}:{job}:" as UTF-8, by (kind, job)
#: (checked ones): copied, never updated itself.
_prefixes: dict[tuple[str, str], Any] = {}


def _prefix(kind: Kind, job: str) -> Any:
    prefix = NAMESPACE.bytes + f"{check_kind(kind)}:{check_job_name(job)}:".encode()
    if len(_prefixes) >= 1024:
        _prefixes.clear()
    sha1 = _prefixes[(kind, job)] = hashlib.sha1(prefix, usedforsecurity=False)
    return sha1


def identity_problem(kind: object, job: object, instance_id: object, uuid: UUID) -> str | None:
    """What is wrong with a stored ``(kind, job, instance_id)`` said to be instance
    ``uuid`` (an index row edited by hand, a faulty tool), or None if it is that
    instance: the same checks an import makes of the row it would write."""
    try:
        expected = instance_uuid(
            check_kind(kind), check_job_name(job), check_instance_id(instance_id)
        )
    except (ConfigurationError, ValidationError) as exc:
        return str(exc)
    if expected != uuid:
        return (
            f"{kind} job {job!r} instance {instance_id!r} is instance {expected}, not the "
            f"instance {uuid} the row is for"
        )
    return None
