"""Instance identity: deterministic aggregate ids and the checks on names and ids."""

from __future__ import annotations

import itertools
from uuid import UUID, uuid5

import pytest

from durable_jobs._domain.ids import (
    KINDS,
    MAX_INSTANCE_ID_LENGTH,
    NAMESPACE,
    check_instance_id,
    check_job_name,
    check_kind,
    instance_uuid,
)
from durable_jobs._errors import ConfigurationError, DurableJobsError, ValidationError


def test_the_namespace_never_changes() -> None:
    """Stored logs are found by these ids: pin the namespace and one id."""
    assert UUID("6f1d4b8e-8a53-5c2e-9d64-0d6b2a3c9e71") == NAMESPACE
    assert instance_uuid("continuous", "counter", "c1") == uuid5(
        UUID("6f1d4b8e-8a53-5c2e-9d64-0d6b2a3c9e71"), "continuous:counter:c1"
    )


def test_instance_uuid_is_deterministic() -> None:
    a = instance_uuid("task", "my_task", "user-1")
    b = instance_uuid("task", "my_task", "user-1")
    assert a == b
    assert a.version == 5


def test_kinds_are_the_three_kinds() -> None:
    assert KINDS == ("continuous", "debounce", "task")


def test_one_id_in_each_kind_is_three_instances() -> None:
    """L06 Each kind keeps its own instances."""
    ids = {instance_uuid(kind, "job", "x") for kind in KINDS}
    assert len(ids) == 3


def test_distinct_jobs_and_ids_give_distinct_uuids() -> None:
    jobs = ["a", "a.b", "a-b", "a_b", "ab", "A"]
    instance_ids = ["x", "x:y", ":", "::", "a:x", "x:", ":x", " x", "X", "ü", "a" * 512]
    triples = list(itertools.product(KINDS, jobs, instance_ids))
    uuids = {instance_uuid(kind, job, iid) for kind, job, iid in triples}
    assert len(uuids) == len(triples)


def test_colons_in_instance_ids_cannot_mimic_another_job() -> None:
    # "job" + "a:b" and "job:a" + "b" would give one string, but job names have no ':'.
    with pytest.raises(ConfigurationError):
        instance_uuid("task", "job:a", "b")
    assert instance_uuid("task", "job", "a:b") != instance_uuid("task", "joba", "b")


def test_instance_uuid_checks_its_kind_and_job() -> None:
    with pytest.raises(ConfigurationError, match="Unknown job kind 'worker'"):
        instance_uuid("worker", "job", "x")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Invalid job name"):
        instance_uuid("task", "", "x")


@pytest.mark.parametrize(
    "name",
    ["a", "A", "0", "_", "token_refresher", "my-job", "v1.2", "a" * 128, "_private.job-1"],
)
def test_valid_job_names(name: str) -> None:
    assert check_job_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a" * 129,
        "has:colon",
        "has space",
        "has/slash",
        ".leading-dot",
        "-leading-dash",
        "trailing-newline\n",
        "ümlaut",
        "tab\there",
    ],
)
def test_invalid_job_names_raise_configuration_error(name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_job_name(name)
    message = str(info.value)
    assert repr(name) in message
    assert "1-128 characters" in message
    assert "letters, digits" in message


@pytest.mark.parametrize("name", [None, 1, b"bytes", ["a"]])
def test_non_string_job_names_raise_configuration_error(name: object) -> None:
    with pytest.raises(ConfigurationError, match="Invalid job name"):
        check_job_name(name)


def test_configuration_error_is_a_durable_jobs_error() -> None:
    with pytest.raises(DurableJobsError):
        check_job_name("bad name")


@pytest.mark.parametrize(
    "instance_id",
    [
        "x",
        "user-1",
        "a:b:c",
        "path/to/thing",
        "spaces are fine",
        "ünïcödé ✓",
        "a" * MAX_INSTANCE_ID_LENGTH,
    ],
)
def test_valid_instance_ids(instance_id: str) -> None:
    assert check_instance_id(instance_id) == instance_id


def test_a_non_string_instance_id_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match=r"must be a str, not int: 42"):
        check_instance_id(42)
    with pytest.raises(ValidationError, match=r"must be a str, not NoneType"):
        check_instance_id(None)


def test_an_empty_instance_id_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match=r"1-512 characters long \(got 0\)"):
        check_instance_id("")


def test_a_too_long_instance_id_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match=r"1-512 characters long \(got 513\)"):
        check_instance_id("a" * (MAX_INSTANCE_ID_LENGTH + 1))


def test_a_nul_in_an_instance_id_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        check_instance_id("a\x00b")


def test_check_kind() -> None:
    for kind in KINDS:
        assert check_kind(kind) == kind
    with pytest.raises(ConfigurationError, match="expected one of continuous, debounce, task"):
        check_kind("worker")
