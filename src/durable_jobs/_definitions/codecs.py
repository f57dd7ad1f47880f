"""Type codecs: each user type (a job's state, its events) validated and stored as JSON
with pydantic, at the job's type version, older versions brought up by upcasters."""

from __future__ import annotations

import copy
import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

import pydantic
import pydantic_core

from durable_jobs._domain.values import (
    _LIMITS,
    DEFAULT_LIMITS,
    check_finite,
    check_json_value,
    check_size,
    current_limits,
    spell_path,
)
from durable_jobs._errors import ConfigurationError, ValidationError

__all__ = ["TypeCodec", "TypeVersionError", "Upcaster"]

S = TypeVar("S")

Upcaster = Callable[[Any], Any]

#: Types whose values :meth:`TypeCodec.dump` stores as they are, without pydantic's
#: two dumps and the walks: a validated ``int``, ``str``, ``bool`` or ``float`` is its
#: own JSON data.
_SCALARS: Final[tuple[type, ...]] = (int, str, bool, float)
#: Ints stored that way (wider ones take the full path, and its checks).
_FAST_INT: Final = 2**63
#: The longest JSON of such an int (``-9223372036854775807``) or bool.
_FAST_INT_JSON: Final = 20


class TypeVersionError(Exception):
    """Stored JSON cannot be brought to the code's type version (callers wrap it)."""


class TypeCodec(Generic[S]):
    """Validates and (de)serialises one user type with a ``pydantic.TypeAdapter``.

    ``version`` is the job's type version: what :meth:`dump` writes. Stored
    JSON of an older version is brought to it by ``upcasters`` (by the version
    they read) before it is validated; see :meth:`read`.
    """

    def __init__(
        self,
        tp: Any,
        *,
        what: str,
        job: str,
        version: int = 1,
        upcasters: dict[int, Upcaster] | None = None,
    ) -> None:
        self.tp = tp
        self.what = what
        self.job = job
        self.version = version
        self.upcasters: dict[int, Upcaster] = {} if upcasters is None else upcasters
        if inspect.isroutine(tp) or isinstance(tp, functools.partial):
            # pydantic would take it (as "validate the arguments of a call") and refuse
            # every value at the first start.
            msg = (
                f"The {what} type of job {job!r} ({tp!r}) is a function, not a type: pass "
                f"the type itself (e.g. {what}=int or {what}=dict[str, Any]), not a function "
                "that makes a value."
            )
            raise ConfigurationError(msg)
        try:
            self.adapter: pydantic.TypeAdapter[S] = pydantic.TypeAdapter(tp)
            self.adapter.json_schema()  # a type pydantic cannot serialise fails now
        except Exception as exc:
            msg = (
                f"The {what} type of job {job!r} ({tp!r}) is not a type pydantic can "
                f"validate and store as JSON: {exc}. Use a pydantic model, a dataclass, "
                "a TypedDict or a plain type such as int or dict[str, Any]."
            )
            raise ConfigurationError(msg) from exc
        #: ``tp`` itself if it is one of the plain scalar types (see :meth:`dump`).
        self._scalar: type | None = next((t for t in _SCALARS if tp is t), None)
        #: ``tp`` itself if it is ``int`` or ``bool`` (see :meth:`checked`).
        self._small: type | None = tp if tp is int or tp is bool else None
        #: The :class:`Limits` attribute that bounds a value's size.
        self._limit_name = DEFAULT_LIMITS.for_value(what)[0]

    def validate(self, value: Any) -> S:
        """``value`` as the type, or :class:`ValidationError` (caller's input)."""
        try:
            return self.adapter.validator.validate_python(value)  # type: ignore[no-any-return]
        except ValidationError:
            raise
        except pydantic.ValidationError as exc:
            msg = f"Invalid {self.what} for job {self.job!r}: {_explain(exc, self.what) or exc}"
            raise ValidationError(msg) from exc
        except Exception as exc:  # one a custom validator raised
            msg = f"Invalid {self.what} for job {self.job!r}: {exc}"
            raise ValidationError(msg) from exc

    def checked(self, value: Any) -> tuple[S, Any]:
        """``value`` as the type, and as plain JSON data: :meth:`validate` then
        :meth:`dump`, in one call. An ``int`` (``bool``) of at most 64 bits given for
        the type ``int`` (``bool``) is both as it is (what those two return for it)
        when the size limit is at least the longest JSON of one."""
        small = self._small
        # Typed Any, not cast() (a Python call, on every job): an int or bool below.
        n: Any = value
        if (
            small is not None
            and type(value) is small
            and -_FAST_INT < n < _FAST_INT
            and getattr(_LIMITS.get(), self._limit_name) >= _FAST_INT_JSON
        ):
            same: S = n
            return same, n
        valid = self.validate(value)
        return valid, self.dump(valid)

    def to_json(self, value: Any) -> Any:
        """``value`` validated, as plain JSON data (what the log stores)."""
        return self.dump(self.validate(value))

    def dump(self, value: S) -> Any:
        """A value :meth:`validate` returned, as plain JSON data.

        The JSON is validated again, as it will be read back: a model instance
        built without validation (``model_construct``) is passed through by
        pydantic's first check, and must not be stored if it cannot be read.
        What JSON cannot hold exactly (NaN, infinities, lone surrogates, bytes
        that are not UTF-8, nesting deeper than the readers accept) and values
        over the size limit are refused with :class:`ValidationError`.

        A value of a plain scalar type (``int``, ``str``, ``bool``, ``float``), of
        exactly that type, is its own JSON data and reads back as itself: only what
        can go wrong with it is checked (a finite float, an int of at most 64 bits,
        a string JSON can encode, the size); anything else takes the full path.
        """
        scalar = self._scalar
        plain: Any = value  # (typed Any, not cast(): a Python call)
        if type(value) is scalar and scalar is not None:
            if (
                (scalar is int or scalar is bool)
                and -_FAST_INT < plain < _FAST_INT
                and current_limits().for_value(self.what)[1] >= _FAST_INT_JSON
            ):
                return value  # its JSON (at most 20 bytes) is under any limit this large
            encoded = _scalar_json(value)
            if encoded is not None:
                try:
                    check_size(encoded, self.what)
                except ValidationError as exc:
                    msg = f"Invalid {self.what} for job {self.job!r}: {exc}"
                    raise ValidationError(msg) from None
                return value
        serializer = self.adapter.serializer
        try:
            # A value that does not fit its type is refused by the JSON dump (warnings as
            # errors); this dump only shows the floats to check, before JSON mode hides some.
            check_finite(serializer.to_python(value, warnings=False), self.what)
            data = serializer.to_python(value, mode="json", warnings="error")
        except ValidationError as exc:
            raise ValidationError(f"Invalid {self.what} for job {self.job!r}: {exc}") from None
        except Exception as exc:  # pydantic's error, bytes not UTF-8, too deep, ...
            msg = f"Invalid {self.what} for job {self.job!r}: it cannot be stored as JSON: {exc}"
            raise ValidationError(msg) from exc
        try:
            check_json_value(data, self.what)
            encoded = pydantic_core.to_json(data)
            check_size(encoded, self.what)
            back = self.adapter.validator.validate_json(encoded)
        except ValidationError as exc:
            raise ValidationError(f"Invalid {self.what} for job {self.job!r}: {exc}") from None
        except Exception as exc:
            msg = f"Invalid {self.what} for job {self.job!r}: {exc}"
            raise ValidationError(msg) from exc
        changed = _first_change(value, back, self.what)
        if changed is not None:
            raise ValidationError(f"Invalid {self.what} for job {self.job!r}: {changed}")
        return data

    def check_json(self, data: Any) -> None:
        """Raise :class:`ValidationError` unless JSON data (of the current version)
        reads back as the type and is within the size limit: what storing ``data``
        as this type's value needs (a debounce job's event kept as its state)."""
        try:
            encoded = pydantic_core.to_json(data)
            check_size(encoded, self.what)
            self.adapter.validator.validate_json(encoded)
        except ValidationError as exc:
            raise ValidationError(f"Invalid {self.what} for job {self.job!r}: {exc}") from None
        except Exception as exc:  # pydantic's error, or one a custom validator raised
            msg = f"Invalid {self.what} for job {self.job!r}: {exc}"
            raise ValidationError(msg) from exc

    def dumped_kind(self) -> str | None:
        """The JSON kind (``"string"``, ``"array"``, ...) every value of the type is
        stored as, when its schema says so plainly (None: it cannot be told)."""
        schema: Any = self.adapter.core_schema
        if "serialization" in schema:  # a custom serializer may write anything
            return None
        kind = _JSON_KINDS.get(schema["type"])
        if schema["type"] in ("model", "dataclass") and schema.get("root_model"):
            return None
        return kind

    def only_kind(self) -> str | None:
        """The one JSON kind stored data must be to read back as the type, when its
        schema says so plainly: no validator that runs first and may take other data,
        no union, no lax conversion (a string to a number). None: it cannot be told."""
        schema: Any = self.adapter.core_schema
        kind = _JSON_KINDS.get(schema["type"])
        if kind is None or kind in ("integer", "number", "boolean"):
            return None  # lax mode reads "12" as 12, "true" as True
        if schema["type"] in ("model", "dataclass"):
            inner = schema.get("schema", {}).get("type")
            if schema.get("root_model") or inner not in ("model-fields", "dataclass-args"):
                return None  # a root model, or a model_validator(mode="before")
        return kind

    def from_json(self, data: Any) -> S:
        """JSON data of the current version as the type; raises pydantic's error if it
        does not fit."""
        return self.adapter.validator.validate_json(pydantic_core.to_json(data))  # type: ignore[no-any-return]

    def missing_upcaster(self, version: int) -> int | None:
        """The first step with no upcaster on the way from ``version`` (None: complete)."""
        for step in range(version, self.version):
            if step not in self.upcasters:
                return step
        return None

    def upcast(self, data: Any, version: int) -> Any:
        """Stored JSON of ``version`` as JSON of the current version.

        Raises :class:`TypeVersionError` for a version newer than the code's, a
        missing upcaster, or an upcaster that raised. The stored data is never
        changed: each upcaster gets a copy.
        """
        if version > self.version:
            msg = (
                f"it was written at version {version} of job {self.job!r}, but this code is "
                f"version {self.version} (was the code rolled back?)"
            )
            raise TypeVersionError(msg)
        if version == self.version:
            return data
        missing = self.missing_upcaster(version)
        if missing is not None:
            msg = (
                f"it was written at version {version} of job {self.job!r} and there is no "
                f"upcaster from version {missing} (register one with "
                f"@job.upcast_{self.what}(from_version={missing}))"
            )
            raise TypeVersionError(msg)
        data = copy.deepcopy(data)
        for step in range(version, self.version):
            try:
                data = self.upcasters[step](data)
            except Exception as exc:
                msg = f"the {self.what} upcaster from version {step} raised {exc!r}"
                raise TypeVersionError(msg) from exc
        return data

    def read(self, data: Any, version: int) -> S:
        """Stored JSON of ``version`` as the type: upcast, then validated.

        Raises :class:`TypeVersionError` or pydantic's error if it does not fit.
        An ``int`` (``bool``) of at most 64 bits stored for the type ``int`` (``bool``)
        at the current version is returned as it is (what the JSON round trip gives).
        """
        small = self._small
        raw: Any = data  # (typed Any, not cast(): a Python call, on every run)
        if (
            small is not None
            and type(data) is small
            and version == self.version
            and -_FAST_INT < raw < _FAST_INT
        ):
            same: S = raw
            return same
        return self.from_json(self.upcast(data, version))


#: The JSON kind of the data pydantic's core schema types are stored as (and read from).
_JSON_KINDS: Final = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "tuple": "array",
    "set": "array",
    "frozenset": "array",
    "dict": "object",
    "typed-dict": "object",
    "model": "object",
    "dataclass": "object",
}

#: The containers whose contents :func:`_first_change` compares (anything else is
#: left to its type: a model or a dataclass reads back as its type says).
_PLAIN: Final = (dict, list, tuple, set, frozenset)
_UNWRITTEN: Final = "Nothing was written."


def _first_change(value: Any, back: Any, what: str) -> str | None:
    """Where ``back`` (``value`` written as JSON and read again as its type) differs
    from ``value`` in the plain containers: a tuple or set read back as a list, an int
    key as a string, a date as a string... when the declared type does not say what
    to make of it (``Any``, ``dict``, ``list``). None when it reads back as it was.

    Only the plain containers are walked: other values (models, dataclasses) are
    their declared type's business, and their equality need not be defined."""
    stack: list[tuple[Any, Any, Any]] = [(value, back, what)]
    while stack:
        v, b, path = stack.pop()
        if type(v) is not type(b):
            if isinstance(v, float | int) and isinstance(b, float | int) and v == b:
                continue  # bool/int/float: JSON keeps the number
            return (
                f"{spell_path(path)} is a {type(v).__name__}, which reads back from JSON as a "
                f"{type(b).__name__} with this type: declare a type that keeps it (e.g. "
                "set[str], tuple[int, int], datetime). Nothing was written."
            )
        if not isinstance(v, _PLAIN):
            continue
        if isinstance(v, set | frozenset):
            if v != b:
                return f"{spell_path(path)} does not read back from JSON as it is. {_UNWRITTEN}"
            continue
        if isinstance(v, dict):
            if v.keys() != b.keys():
                key = next(k for k in v if k not in b)
                return (
                    f"{spell_path(path)} has the key {key!r:.40}, which reads back from JSON as "
                    "a string key with this type. Nothing was written."
                )
            stack.extend((item, b[k], (path, k)) for k, item in v.items())
            continue
        if len(v) != len(b):
            return f"{spell_path(path)} does not read back from JSON as it is. {_UNWRITTEN}"
        stack.extend((item, b[i], (path, i)) for i, item in enumerate(v))
    return None


def _explain(exc: pydantic.ValidationError, what: str) -> str | None:
    """A plain message for pydantic's error when every problem is a key that is not a
    string where the type takes string keys (None: pydantic's own says it best)."""
    errors = exc.errors(include_url=False)
    if not all(
        e["type"] == "string_type" and len(e["loc"]) > 1 and e["loc"][-1] == "[key]"
        for e in errors
    ):
        return None
    *parents, _, _ = errors[0]["loc"]
    key = errors[0]["input"]
    path: Any = what
    for step in parents:
        path = (path, step)
    return (
        f"{spell_path(path)} has the key {key!r:.40}, which is not a string: JSON object "
        "keys are strings, and this type takes string keys. Nothing was written."
    )


def _scalar_json(value: Any) -> bytes | None:
    """The JSON of a plain scalar value, if it is stored as it is (None: take the full
    path, which names the problem: a NaN, an int too wide, a lone surrogate)."""
    if type(value) is int:
        if not -_FAST_INT < value < _FAST_INT:
            return None
    elif type(value) is float and not math.isfinite(value):
        return None
    try:
        return pydantic_core.to_json(value)
    except Exception:  # a lone surrogate
        return None
