"""Store URLs: parsing, validation and password redaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from durable_jobs._errors import ConfigurationError

__all__ = ["StoreURL", "redact", "scrub", "scrub_chain"]


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``str()`` and ``repr()`` never show the password."""

    scheme: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> StoreURL:
        """Parse ``url``; a malformed one raises :class:`ConfigurationError` (redacted)."""
        if not isinstance(url, str) or "://" not in url:
            shown = redact(url) if isinstance(url, str) else type(url).__name__
            msg = (
                f"Malformed store URL {shown!r}: expected 'scheme://...', e.g. "
                "'memory://', 'sqlite:///jobs.db' or 'postgresql://user@host/db'."
            )
            raise ConfigurationError(msg)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            msg = f"Malformed store URL {redact(url)!r}: {exc}."
            raise ConfigurationError(msg) from None
        query: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in query:
                msg = f"Store URL {redact(url)!r} repeats the option {key!r}."
                raise ConfigurationError(msg)
            query[key] = value
        return cls(
            scheme=parts.scheme.lower(),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            host=parts.hostname,
            port=port,
            path=unquote(parts.path),
            query=query,
        )

    def option(self, name: str, default: str | None = None) -> str | None:
        """A ``?name=value`` option of the URL."""
        return self.query.get(name, default)

    def check_options(self, allowed: set[str]) -> None:
        """Raise ConfigurationError for any query option not in ``allowed``."""
        unknown = sorted(set(self.query) - allowed)
        if unknown:
            accepted = ", ".join(sorted(allowed)) or "none"
            # Only option names: a value could be a secret put in the wrong place.
            where = f"{self.scheme}://{self.host or ''}{self.path}"
            msg = (
                f"Unknown option(s) {', '.join(unknown)} in store URL {where!r}; "
                f"{self.scheme} accepts: {accepted}."
            )
            raise ConfigurationError(msg)

    def __str__(self) -> str:
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":***"
            auth += "@"
        elif self.password is not None:
            auth = ":***@"
        netloc = auth + (self.host or "")
        if self.port is not None:
            netloc += f":{self.port}"
        query = "&".join(f"{k}={v}" for k, v in self.query.items())
        return f"{self.scheme}://{netloc}{self.path}" + (f"?{query}" if query else "")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (best effort on malformed input)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        auth, _, hostport = netloc.rpartition("@")
        if ":" in auth:
            auth = auth.split(":", 1)[0] + ":***"
        netloc = f"{auth}@{hostport}"
    return f"{scheme}://{netloc}{slash}{tail}"


def scrub(text: str, password: str | None) -> str:
    """``text`` without ``password`` (nor its URL-quoted form)."""
    if not password:
        return text
    for form in {password, quote(password, safe=""), quote(password)}:
        text = text.replace(form, "***")
    return text


def scrub_chain(exc: BaseException, password: str | None) -> None:
    """Remove ``password`` from the messages of ``exc`` and its causes (in place)."""
    if not password:
        return
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(isinstance(a, str) for a in current.args):
            current.args = tuple(
                scrub(a, password) if isinstance(a, str) else a for a in current.args
            )
        current = current.__cause__ or current.__context__
