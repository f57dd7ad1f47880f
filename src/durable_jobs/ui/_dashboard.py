"""What the dashboard's routes share: the :class:`Dashboard` and request parameters."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, unquote, urlencode

import jinja2
import trio
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from durable_jobs._errors import ValidationError
from durable_jobs._store.base import Store
from durable_jobs._store.urls import redact
from durable_jobs._tools.inspector import Inspector
from durable_jobs._tools.text import escape_controls_lines, printable, printable_lines
from durable_jobs.ui import _format
from durable_jobs.ui._shared_tail import SharedTail

__all__ = ["DEFAULT_MAX_LIVE", "Dashboard", "LiveSlots", "cross_site"]

#: How many live streams (open live pages) a dashboard serves at once by default.
DEFAULT_MAX_LIVE: Final = 16


class _Verbatim(str):
    """A value shown as it is (HTML-escaped only): a form field's value, sent back as data."""

    __slots__ = ()


def _verbatim(value: Any) -> _Verbatim:
    return _Verbatim("" if value is None else value)


def _shown(value: Any) -> Any:
    """What a template shows of ``value``: control and format characters (ESC, bidi
    overrides such as U+202E, zero-width spaces, newlines and tabs) written as escapes
    and backslashes doubled, as the CLI does, so a stored id cannot show reversed, hide
    a character, pose as another id by spelling out an escape, or show ``"a\\nb"`` as
    ``"a b"``: a plain string is a single-line value (an id, a job name, a title). A
    :class:`~durable_jobs.ui._format.Shown` value (JSON, a message quoting ids with
    ``repr``) and Markup (a macro's HTML, whose values were shown already) have their
    control characters escaped only, newlines and tabs kept (JSON and messages shown as
    blocks in ``<pre>``): their backslashes are escapes already, and Markup stays Markup
    (the escapes add no HTML). A :func:`_verbatim` value (a form field's) is left as it
    is.
    """
    if isinstance(value, _Verbatim):
        return str(value)
    if hasattr(value, "__html__"):  # Markup: HTML already; the escapes add none
        return Markup(escape_controls_lines(value.__html__()))  # noqa: S704
    if isinstance(value, _format.Shown):
        return escape_controls_lines(value)
    if isinstance(value, str):
        return printable(value)
    if value is None or isinstance(value, (int, float)):
        return value
    # An object shown by its str: an error, a message (a block).
    return printable_lines(str(value))


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("durable_jobs.ui", "templates"),
        autoescape=True,
        finalize=_shown,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _format.when
    env.filters["pretty"] = _format.pretty
    env.filters["short"] = _format.short
    env.filters["verbatim"] = _verbatim
    env.filters["quoted"] = _quoted
    # A library message (it quotes ids with repr: their backslashes are escaped already).
    env.filters["message"] = _format.Shown
    env.globals["describe"] = _format.describe
    env.globals["outcome"] = _format.outcome
    env.globals["ago"] = _format.ago
    env.globals["span"] = _format.span
    return env


class LiveSlots:
    """The live streams a dashboard serves at once, at most ``limit`` (thread-safe).

    The streams share one tail of the store (one thread; on Postgres one LISTEN
    connection), but each holds a buffer of events and, while it catches up, a
    thread and a pooled connection: the cap bounds them, whoever opens the pages.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()
        self._full_since_warned = False

    def take(self) -> LiveSlot | None:
        """A slot for one more stream, or ``None`` when all are taken."""
        with self._lock:
            if self.open >= self.limit:
                return None
            self.open += 1
            self._full_since_warned = False
            return LiveSlot(self)

    def first_refusal(self) -> bool:
        """Whether this refusal is the first since a stream was last let in (to warn once)."""
        with self._lock:
            first = not self._full_since_warned
            self._full_since_warned = True
            return first

    def _give_back(self) -> None:
        with self._lock:
            self.open -= 1


class LiveSlot:
    """One stream's slot: given back when its response and its tail thread have both ended."""

    def __init__(self, slots: LiveSlots) -> None:
        self._slots = slots
        self._holders = 1
        self._lock = threading.Lock()

    def hold(self) -> None:
        """One more holder (the tail thread), each of which calls :meth:`release`."""
        with self._lock:
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            last = self._holders == 0
        if last:
            self._slots._give_back()


@dataclass
class Dashboard:
    """What the routes share: the store, the settings, the templates."""

    store: Store
    allow_actions: bool
    now: Callable[[], datetime]
    max_live: int = DEFAULT_MAX_LIVE
    csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    env: jinja2.Environment = field(default_factory=_env)
    limiter: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(4))
    #: Actions' own thread: one may wait seconds for a run in flight (Postgres), and
    #: must not take the threads the pages read with.
    action_limiter: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(1))

    def __post_init__(self) -> None:
        self.inspector = Inspector(self.store)
        self.live = LiveSlots(self.max_live)
        self.tail = SharedTail(self.store)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a blocking store function in a worker thread."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def run_action(self, fn: Callable[[], Any]) -> Any:
        """Call a blocking action in a worker thread of its own: it may wait for a run
        in flight, and the pages go on being served meanwhile (actions queue here, one
        at a time, without holding a thread while they queue)."""
        return await trio.to_thread.run_sync(fn, limiter=self.action_limiter)

    def action_token(self, *fields: str) -> str:
        """The CSRF token of the form confirming an action on an instance as its page
        showed it, and no other: ``fields`` are the form's action, kind, job, id,
        version and generation."""
        message = "\0".join(fields).encode("utf-8", "surrogatepass")
        return hmac.new(self.csrf_key, message, hashlib.sha256).hexdigest()

    def render(
        self, name: str, request: Request, status_code: int = 200, **context: Any
    ) -> Response:
        if isinstance(context.get("message"), str):
            # The library's messages quote ids with repr (backslashes escaped already).
            context["message"] = _format.Shown(context["message"])
        base = {
            "store_url": redact(str(self.store.url)),
            "allow_actions": self.allow_actions,
            "path": request.url.path,
            "now": self.now(),
            "qs": _qs,
            # The index rows a page left out because they cannot be read.
            "unreadable": [],
        }
        html = self.env.get_template(name).render({**base, **context})
        return HTMLResponse(html, status_code=status_code)

    def macro(self, name: str, *args: Any) -> str:
        module = self.env.get_template("_macros.html").make_module({"now": self.now(), "qs": _qs})
        return str(getattr(module, name)(*args))


def _qs(**params: Any) -> str:
    """A query string of the parameters that are set."""
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


def _param(request: Request, name: str) -> str | None:
    """The query parameter ``name`` exactly as sent (``None`` if absent or empty): an
    instance id may begin or end with spaces, NBSP or newlines, and the id ``"trail "``
    is another instance than ``"trail"``."""
    return request.query_params.get(name) or None


def _quoted(value: str) -> str:
    """``value`` percent-encoded (ASCII only), as the pages' forms send an id (``iq``)."""
    return quote(value, safe="")


def instance_id_of(values: Mapping[str, Any]) -> str | None:
    """The instance id a query or a form names, exactly as stored (``None`` if none):
    ``id`` as sent (a link's), or ``iq``, the id percent-encoded (a form's: a browser
    sends a form field's newlines as CRLF, and the id ``"a\\nb"`` would come back as
    ``"a\\r\\nb"``). Naming it both ways is refused."""
    raw, quoted = values.get("id"), values.get("iq")
    if quoted is not None and raw is not None:
        raise ValidationError("Name the instance's id once: id or iq, not both.")
    if isinstance(quoted, str) and quoted:
        try:
            return unquote(quoted, errors="strict")
        except UnicodeDecodeError:
            raise ValidationError("iq must be an id percent-encoded in UTF-8.") from None
    return raw if isinstance(raw, str) and raw else None


def _search_param(request: Request, name: str) -> str | None:
    """A search box's text, its surrounding whitespace dropped (``None`` if none is left)."""
    return request.query_params.get(name, "").strip() or None


def _int_param(request: Request, name: str) -> int | None:
    value = _search_param(request, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        msg = f"{name} must be a whole number, not {value[:40]!r}."
        raise ValidationError(msg) from None


def cross_site(request: Request) -> str | None:
    """Why ``request`` came from a page of another site, or ``None`` if it did not.

    A browser names the page's origin in ``Origin`` (on a POST, and on a cross-origin
    fetch or ``EventSource``), and marks a request made for a page of another site
    ``Sec-Fetch-Site: cross-site`` (an ``<img src>`` too, which sends no ``Origin``), or
    ``same-site`` for one on another port of the same host (``localhost:3000``): the
    dashboard's own pages' requests are ``same-origin``. A request with neither header
    (curl, a script) is not a browser's for another page.
    """
    origin = request.headers.get("origin")
    if origin is not None:
        # http:// or https:// with the host (and port) the request was sent to: behind
        # a proxy that adds TLS, the browser's page is https:// while this server is
        # asked in http:// (the proxy passes the Host on); a page of the same host and
        # port is this dashboard's either way.
        netloc = request.url.netloc.lower()
        scheme, _, rest = origin.lower().partition("://")
        if scheme not in ("http", "https") or rest != netloc:
            return (
                f"its Origin is {origin[:100]!r}, not this dashboard's "
                f"'http://{netloc}' (or https://)"
            )
    fetch_site = request.headers.get("sec-fetch-site", "").strip().lower()
    if fetch_site in ("cross-site", "same-site"):
        return f"the browser marked it Sec-Fetch-Site: {fetch_site}"
    return None


def _dash(request: Request) -> Dashboard:
    dash: Dashboard = request.app.state.dashboard
    return dash
