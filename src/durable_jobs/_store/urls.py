"""Store URLs: parsing, validation and password redaction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
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
    #: Every ``(host, port)`` of a libpq multi-host URL
    #: (``postgresql://u@db1:5432,db2:5432/jobs``), in order; empty for a URL
    #: with one host, which is :attr:`host` and :attr:`port`.
    hosts: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def parse(cls, url: str) -> StoreURL:
        """Parse ``url``; a malformed one raises :class:`ConfigurationError` (redacted)."""
        if not isinstance(url, str) or not url.partition(":")[2].startswith("//"):
            shown = redact(url) if isinstance(url, str) else type(url).__name__
            msg = (
                f"Malformed store URL {shown!r}: expected 'scheme://...', e.g. "
                "'memory://', 'sqlite:///jobs.db' or 'postgresql://user@host/db'."
            )
            raise ConfigurationError(msg)
        try:
            url.encode("utf-8")
        except UnicodeEncodeError:
            # A byte that is not UTF-8 (a surrogate escape, from a command line or the
            # environment): it would fail later, in an error whose repr holds the URL.
            shown = redact(url).encode("utf-8", "backslashreplace").decode("utf-8")
            msg = (
                f"Malformed store URL {shown!r}: it holds a byte that is not UTF-8 text "
                "(a user name, password, host or path must be UTF-8 text)."
            )
            raise ConfigurationError(msg) from None
        try:
            parts = urlsplit(url)
            hostport = parts.netloc.rpartition("@")[2]
            # Not for a URL with an '@' after its host: what looks like a port there is
            # part of a password holding a '/' (refused below, without quoting it).
            if not _at_after_host(url, parts.netloc, parts.query):
                _check_ports(url, hostport)
            hosts = _host_list(hostport)
            port = parts.port if not hosts else None
        except ValueError:
            # Not the parser's message: it can quote part of a password ("Port could
            # not be cast to integer value as 'SECR'").
            msg = (
                f"Malformed store URL {redact(url)!r}: its host or port cannot be read "
                "(a password holding '/', '@', ':' or '#' must be percent-encoded, e.g. "
                "'/' as %2F)."
            )
            raise ConfigurationError(msg) from None
        if _at_after_host(url, parts.netloc, parts.query):
            msg = (
                f"Malformed store URL {redact(url)!r}: an '@' after the host (a password "
                "holding '/', '?', '#' or '@' must be percent-encoded, e.g. '/' as %2F)."
            )
            raise ConfigurationError(msg)
        if parts.fragment or "#" in url:
            msg = (
                f"Malformed store URL {redact(url)!r}: it holds a '#' (a password holding "
                "'#' must be percent-encoded as %23)."
            )
            raise ConfigurationError(msg)
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
            host=",".join(h for h, _ in hosts) if hosts else parts.hostname,
            port=port,
            path=unquote(parts.path),
            query=query,
            hosts=hosts,
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
            where = str(replace(self, query={}))
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
        if self.hosts:
            netloc = auth + ",".join(
                _bracketed(h) + (f":{p}" if p is not None else "") for h, p in self.hosts
            )
        else:
            netloc = auth + (_bracketed(self.host) if self.host else "")
            if self.port is not None:
                netloc += f":{self.port}"
        query = "&".join(f"{k}={v}" for k, v in self.query.items())
        # Redacted again: a password with an unquoted '/' ends up in the path.
        return redact(f"{self.scheme}://{netloc}{self.path}" + (f"?{query}" if query else ""))


def _at_after_host(url: str, netloc: str, query: str) -> bool:
    """Whether ``url`` holds an ``@`` after its host (in the path or the query)."""
    return "@" in query or bool(netloc and url.rfind("@") > url.find(netloc) + len(netloc))


def _split_host(item: str) -> tuple[str, str]:
    """``(host, port text)`` of one ``host[:port]`` (an IPv6 address in brackets);
    ValueError for text after an IPv6 address's ``]`` that is not ``:port``."""
    if item.startswith("["):  # an IPv6 address: [::1]:5432
        host, _, rest = item[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(item)
        return host, rest[1:]
    host, _, port_text = item.partition(":")
    return host, port_text


def _check_ports(url: str, hostport: str) -> None:
    """ConfigurationError for a port given as a number outside 1-65535 (``:0`` included:
    libpq would take it for no port and connect to 5432)."""
    for item in hostport.split(","):
        port_text = _split_host(item)[1]
        if port_text.isdigit() and not 0 < int(port_text) < 65536:
            msg = (
                f"Invalid port {port_text} in store URL {redact(url)!r}: a port is a number "
                "from 1 to 65535 (leave it out for the default, 5432 for Postgres)."
            )
            raise ConfigurationError(msg)


def _host_list(hostport: str) -> tuple[tuple[str, int | None], ...]:
    """The hosts of a libpq multi-host netloc (``db1:5432,db2``); empty for one host.

    ValueError for an empty host or a port that is not a number from 1 to 65535.
    """
    if "," not in hostport:
        return ()
    hosts: list[tuple[str, int | None]] = []
    for item in hostport.split(","):
        host, port_text = _split_host(item)
        if not host:
            raise ValueError(item)
        port: int | None = None
        if port_text:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError(item)
            port = int(port_text)
        hosts.append((unquote(host).lower(), port))
    return tuple(hosts)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")


def redact(url: str) -> str:
    """``url`` without its password, whatever the URL looks like (malformed ones too).

    Everything between the scheme's ``:`` (and the slashes after it) and the
    *last* ``@`` is user information, since a password may hold ``/``, ``:``
    or ``@`` unquoted. Only a well-formed ``scheme://user:...@`` keeps its
    user name (up to the first ``:``, without ``/``); in every other case the
    whole user information becomes ``***`` (it cannot be told from a
    password), even in an SQLite path holding an ``@``.
    """
    at = url.rfind("@")
    if at < 0:
        return url
    colon = url.find(":")
    if colon < 0 or colon > at or not _SCHEME.fullmatch(url[:colon]):
        return "***" + url[at:]
    start = colon + 1
    while start < at and url[start] == "/":
        start += 1
    user, has_password, _ = url[start:at].partition(":")
    if start - colon != 3 or "/" in user:  # not exactly 'scheme://user'
        return f"{url[:start]}***{url[at:]}"
    return f"{url[:start]}{user}{':***' if has_password else ''}{url[at:]}"


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
