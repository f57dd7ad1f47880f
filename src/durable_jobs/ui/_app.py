"""The dashboard's ASGI app: Starlette routes rendering Jinja2 templates.

Everything is read through :class:`durable_jobs.Inspector` and
:mod:`durable_jobs.maintenance` in worker threads (store calls block). Live
updates are server-sent events fed by :func:`durable_jobs.maintenance.tail_events`.
Every value from the store reaches the page through an autoescaping template.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from durable_jobs._domain.ids import KINDS
from durable_jobs._errors import (
    DurableJobsError,
    StoreError,
    UnreadableIndexRow,
    ValidationError,
)
from durable_jobs._store.base import Store
from durable_jobs._store.index import IndexRow, Unreadable
from durable_jobs._store.rows import page_end
from durable_jobs._telemetry import log_fields
from durable_jobs._tools.args import STATUSES, decode_cursor, encode_cursor, uuid_of
from durable_jobs._tools.views import InstancePage, InstanceSummary
from durable_jobs.maintenance import TailEvent, tail_events, tail_position
from durable_jobs.ui._actions import ACTIONS, ActionRefused, Seen, available, perform
from durable_jobs.ui._dashboard import (
    DEFAULT_MAX_LIVE,
    Dashboard,
    _dash,
    _int_param,
    _param,
    _qs,
    _search_param,
    cross_site,
    instance_id_of,
)
from durable_jobs.ui._live import events_stream
from durable_jobs.ui._middleware import BasicAuth, HostCheck, _Headers, _Revalidated

__all__ = ["BasicAuth", "Dashboard", "create_app"]

log = logging.getLogger("durable_jobs.ui")

PAGE_SIZE: Final = 50
MAX_PAGE: Final = 500
FEED_SIZE: Final = 20


# ---- pages -------------------------------------------------------------------------------


async def instances_page(request: Request) -> Response:
    dash = _dash(request)
    kind, job, status = _param(request, "kind"), _param(request, "job"), _param(request, "status")
    query, cursor = _search_param(request, "q"), _param(request, "cursor")
    limit = _int_param(request, "limit") or PAGE_SIZE
    if not 1 <= limit <= MAX_PAGE:
        msg = f"limit must be from 1 to {MAX_PAGE}, not {limit}."
        raise ValidationError(msg)
    position = await dash.run(tail_position, dash.store)
    unreadable: list[StoreError] = []
    if query is None:
        page: InstancePage = await dash.run(
            lambda: dash.inspector.instances(
                kind=kind,
                job=job,
                status=status,
                cursor=cursor,
                limit=limit,
                unreadable=unreadable.append,
            )
        )
    else:
        filters = {"kind": kind, "job": job, "status": status}
        page = await dash.run(
            lambda: _search(dash, filters, query, cursor, limit, unreadable=unreadable.append)
        )
    feed = await dash.run(_recent, dash.store, position)
    return dash.render(
        "instances.html",
        request,
        unreadable=unreadable,
        page=page,
        kinds=KINDS,
        statuses=STATUSES,
        filters={"kind": kind, "job": job, "status": status, "q": query},
        limit=None if limit == PAGE_SIZE else limit,
        feed=feed,
        position=position,
    )


def _search(
    dash: Dashboard,
    filters: dict[str, str | None],
    query: str,
    cursor: str | None,
    limit: int,
    *,
    unreadable: Unreadable,
) -> InstancePage:
    """Instances whose id contains ``query`` (any case), a page at a time."""
    kind, job, status = filters["kind"], filters["job"], filters["status"]
    if kind is not None and kind not in KINDS:
        msg = f"Unknown job kind {kind!r}: expected one of {', '.join(KINDS)}."
        raise ValidationError(msg)
    if status is not None and status not in STATUSES:
        msg = f"Unknown status {status!r}: expected one of {', '.join(STATUSES)}."
        raise ValidationError(msg)
    needle = query.casefold()
    after = decode_cursor(cursor) if cursor is not None else None
    found: list[tuple[InstanceSummary, IndexRow]] = []
    while True:
        skipped: list[UnreadableIndexRow] = []
        rows = dash.store.list_instances(
            kind=kind, job=job, status=status, after=after, limit=500, unreadable=skipped.append
        )
        for error in skipped:
            unreadable(error)
        for row in rows:
            if needle not in row.instance_id.casefold():
                continue
            if len(found) == limit:
                return InstancePage(
                    items=[s for s, _ in found], next_cursor=encode_cursor(found[-1][1])
                )
            # The Inspector's summary of an index row (with the error if its log is unreadable).
            found.append((dash.inspector._summary_of_row(row), row))
        after = page_end(rows, skipped)
        if len(rows) + len(skipped) < 500 or after is None:
            return InstancePage(items=[s for s, _ in found], next_cursor=None)


def _recent(store: Store, position: int) -> list[TailEvent]:
    """The last events committed up to ``position``, newest first."""
    start = max(0, position - FEED_SIZE)
    events = list(tail_events(store, after=start, duration=0, limit=FEED_SIZE))
    return [e for e in reversed(events) if e.position <= position]


def _not_found(
    dash: Dashboard, request: Request, kind: str, job: str, instance_id: str
) -> Response:
    return dash.render(
        "error.html",
        request,
        status_code=404,
        title="Not found",
        message=f"No {kind} job {job!r} instance {instance_id!r} in this store.",
    )


#: Records on one page of an instance's timeline (the latest ones unless ``upto`` says).
TIMELINE_PAGE = 200


async def instance_page(request: Request) -> Response:
    dash = _dash(request)
    kind, job = _param(request, "kind"), _param(request, "job")
    instance_id = instance_id_of(request.query_params)
    if kind is None or job is None or instance_id is None:
        msg = "Name the instance: kind, job and id."
        raise ValidationError(msg)
    version = _int_param(request, "v")
    from_v, to_v = _int_param(request, "from"), _int_param(request, "to")
    upto = _int_param(request, "upto")  # the timeline's last version (None: the latest)
    if upto is not None and upto < 1:
        msg = f"upto must be a version (1 or more), not {upto}."
        raise ValidationError(msg)
    full = _param(request, "full") is not None

    def read() -> dict[str, Any] | None:
        position = tail_position(dash.store)
        summary = dash.inspector.status(kind, job, instance_id)
        if summary is None:
            return None
        # One page of the timeline: a long-lived instance's whole log made pages of
        # tens of megabytes, and seconds of server time, on every view.
        end = summary.version if upto is None else min(upto, summary.version)
        start = max(1, end - TIMELINE_PAGE + 1)
        records = dash.inspector.history(
            kind, job, instance_id, from_version=start, to_version=end, states=False
        )
        view = dash.inspector.state_at(kind, job, instance_id, version=version)
        diff = None
        if from_v is not None and to_v is not None:
            diff = dash.inspector.diff(kind, job, instance_id, from_v, to_v, full=full)
        return {
            "position": position,
            "summary": summary,
            "records": records,
            "timeline": {
                "start": start,
                "end": end,
                "last": summary.version,
                "size": TIMELINE_PAGE,
            },
            "view": view,
            "diff": diff,
        }

    found = await dash.run(read)
    if found is None:
        return _not_found(dash, request, kind, job, instance_id)
    summary = found["summary"]
    actions: list[str] = []
    if dash.allow_actions:
        # The actions apply to the instance as it is now, whatever version is shown.
        latest = await dash.run(lambda: dash.inspector.state_at(kind, job, instance_id))
        closed = bool(latest.data.get("closed")) if latest is not None else False
        actions = list(
            available(kind, summary.status, buffered=summary.event_count, closed=closed)
        )
    return dash.render(
        "instance.html",
        request,
        kind=kind,
        job=job,
        instance_id=instance_id,
        actions=actions,
        action_words=ACTIONS,
        live_url="/events?" + _qs(kind=kind, job=job, id=instance_id),
        page_url="/instance?" + _qs(kind=kind, job=job, id=instance_id),
        full=full,
        from_v=from_v,
        to_v=to_v,
        **found,
    )


async def alarms_page(request: Request) -> Response:
    dash = _dash(request)
    now = dash.now()
    unreadable: list[StoreError] = []
    overdue = await dash.run(
        lambda: dash.inspector.alarms(
            now=now, overdue=True, limit=500, unreadable=unreadable.append
        )
    )
    pending = await dash.run(
        lambda: dash.inspector.alarms(now=now, limit=500, unreadable=unreadable.append)
    )
    upcoming = [a for a in pending if not a.overdue]
    # Both reads may meet the same unreadable row.
    once = list({str(e): e for e in unreadable}.values())
    return dash.render("alarms.html", request, overdue=overdue, upcoming=upcoming, unreadable=once)


async def stats_page(request: Request) -> Response:
    dash = _dash(request)
    unreadable: list[StoreError] = []
    stats = await dash.run(
        lambda: dash.inspector.stats(now=dash.now(), unreadable=unreadable.append)
    )
    used = {s for js in stats for s in js.by_status}
    return dash.render(
        "stats.html",
        request,
        stats=stats,
        statuses=[s for s in STATUSES if s in used],
        unreadable=unreadable,
    )


# ---- actions -----------------------------------------------------------------------------


def _actions_off(dash: Dashboard, request: Request) -> Response | None:
    if dash.allow_actions:
        return None
    return dash.render(
        "error.html",
        request,
        status_code=403,
        title="Actions are off",
        message="This dashboard is read-only: start it with --allow-actions to change instances.",
    )


async def confirm_page(request: Request) -> Response:
    dash = _dash(request)
    refused = _actions_off(dash, request)
    if refused is not None:
        return refused
    action = _param(request, "action")
    kind, job = _param(request, "kind"), _param(request, "job")
    instance_id = instance_id_of(request.query_params)
    if action not in ACTIONS or kind is None or job is None or instance_id is None:
        msg = "Name an action and the instance: action, kind, job and id."
        raise ValidationError(msg)

    def read() -> InstanceSummary | None:
        # The index row first: an instance whose log cannot be read is shown (and can be
        # purged) as its row says, with the error; its generation is then unknown.
        row = dash.store.index_row(uuid_of(kind, job, instance_id))
        return None if row is None else dash.inspector._summary_of_row(row)

    summary = await dash.run(read)
    if summary is None:
        return _not_found(dash, request, kind, job, instance_id)
    # The confirmation is of the instance as shown here: the form carries its version
    # and generation (signed by the token), and the action refuses another generation.
    version = str(summary.version)
    generation = "" if summary.generation is None else str(summary.generation)
    # When the generation began: a purge starts generations at 1 again.
    born = "" if summary.created_at is None else summary.created_at.isoformat()
    return dash.render(
        "confirm.html",
        request,
        csrf_token=dash.action_token(action, kind, job, instance_id, version, generation, born),
        action=action,
        words=ACTIONS[action],
        kind=kind,
        job=job,
        instance_id=instance_id,
        summary=summary,
        version=version,
        generation=generation,
        born=born,
    )


async def action_post(request: Request) -> Response:
    dash = _dash(request)
    refused = _actions_off(dash, request)
    if refused is not None:
        return refused
    foreign = cross_site(request)
    if foreign is not None:
        return dash.render(
            "error.html",
            request,
            status_code=403,
            title="Refused",
            message=f"This form was sent by a page of another site ({foreign}): the "
            "dashboard takes actions from its own pages only. Open the instance's page "
            "on the dashboard and confirm from there. Nothing was changed.",
        )
    form = await request.form()
    token = form.get("csrf_token")
    fields = ("action", "kind", "job", "version", "generation", "born")
    values = {k: form.get(k) for k in fields}
    action, kind, job, version, generation, born = (
        v if isinstance(v, str) else "" for v in values.values()
    )
    instance_id = instance_id_of(form) or ""
    # The token is the one its confirmation page gave for this action on this instance,
    # at the version and generation the page showed.
    expected = dash.action_token(action, kind, job, instance_id, version, generation, born)
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(), expected.encode()):
        return dash.render(
            "error.html",
            request,
            status_code=403,
            title="Refused",
            message="The form's CSRF token is missing or wrong (each confirmation page's "
            "token confirms its own action on its own instance, as the page showed it): "
            "open the page again and confirm from there. Nothing was changed.",
        )
    if not all((action, kind, job, instance_id)) or not version.isdigit():
        msg = "Name an action and the instance: action, kind, job, id and version."
        raise ValidationError(msg)
    seen = Seen(int(version), int(generation) if generation.isdigit() else None, born or None)
    now = dash.now()
    try:
        # Waits (up to ACTION_WAIT) for a run in flight, in a thread of its own.
        result = await dash.run_action(
            lambda: perform(dash.store, action, kind, job, instance_id, now=now, seen=seen)
        )
    except (ActionRefused, DurableJobsError) as exc:
        return dash.render(
            "error.html", request, status_code=409, title="Not done", message=str(exc)
        )
    log.info(
        "dashboard action %s on %s job %r instance %r",
        action,
        kind,
        job,
        instance_id,
        extra=log_fields(kind, job, instance_id),
    )
    back = "" if action == "purge" else "/instance?" + _qs(kind=kind, job=job, id=instance_id)
    # POST-redirect-GET: refreshing the Done page shows it again and sends nothing. Its
    # query is signed, so that no link can make the dashboard say what it did not do.
    signature = dash.action_token("done", result.message, back)
    done = "/done?" + _qs(message=result.message, back=back, sig=signature)
    return RedirectResponse(done, status_code=303)


async def done_page(request: Request) -> Response:
    """What an action did, as its POST redirected here to say."""
    dash = _dash(request)
    params = request.query_params
    message, back, signature = params.get("message", ""), params.get("back", ""), params.get("sig")
    expected = dash.action_token("done", message, back)
    if (
        not message
        or not isinstance(signature, str)
        or not hmac.compare_digest(signature.encode(), expected.encode())
    ):
        return dash.render(
            "error.html",
            request,
            status_code=400,
            title="Cannot show this",
            message="This page shows what an action of this dashboard did, after it did "
            "it; open an instance's page to see how it is now.",
        )
    return dash.render("done.html", request, message=message, back=back or None)


# ---- errors and the app ------------------------------------------------------------------


async def _bad_input(request: Request, exc: Exception) -> Response:
    dash = _dash(request)
    # The store failing is the server's problem; anything else is the request's.
    status = 503 if isinstance(exc, StoreError) else 400
    return dash.render(
        "error.html", request, status_code=status, title="Cannot show this", message=str(exc)
    )


def create_app(
    store: Store,
    *,
    allow_actions: bool = False,
    credentials: str | None = None,
    now: Callable[[], datetime] | None = None,
    allowed_hosts: Iterable[str] | None = None,
    any_address: bool = False,
    max_live: int = DEFAULT_MAX_LIVE,
) -> ASGIApp:
    """The dashboard on ``store`` (left open: the caller closes it).

    ``credentials`` (``user:password``) turns on HTTP basic auth; ``now`` is
    the clock relative times use (default: the current UTC time).
    ``allowed_hosts`` are the host names requests may carry in their ``Host``
    header (others get 400; ``any_address`` accepts any IP address too);
    ``None`` checks no Host (:func:`durable_jobs.ui.serve` always passes them).
    ``max_live`` caps the live streams served at once (they share one tail of
    the store, but each holds a buffer of events, and a thread while it catches
    up); one more gets 503 and its page goes on without live updates. 0 turns
    live updates off.
    """
    if max_live < 0:
        msg = f"max_live must be 0 or more, not {max_live}."
        raise ValidationError(msg)
    dash = Dashboard(
        store=store,
        allow_actions=allow_actions,
        now=now or (lambda: datetime.now(UTC)),
        max_live=max_live,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # Served no more: the store tail's thread ends before the caller may close
            # the store.
            await dash.tail.close()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", instances_page),
            Route("/instance", instance_page),
            Route("/alarms", alarms_page),
            Route("/stats", stats_page),
            Route("/events", events_stream),
            Route("/confirm", confirm_page),
            Route("/action", action_post, methods=["POST"]),
            Route("/done", done_page),
            Mount(
                "/static",
                _Revalidated(StaticFiles(packages=[("durable_jobs.ui", "static")])),
                name="static",
            ),
        ],
        exception_handlers={DurableJobsError: _bad_input},
    )
    app.state.dashboard = dash
    wrapped: ASGIApp = app
    if credentials is not None:
        wrapped = BasicAuth(wrapped, credentials)
    if allowed_hosts is not None:
        wrapped = HostCheck(wrapped, allowed_hosts, any_address=any_address)
    # Outermost: the Host check's and basic auth's refusals carry the headers too.
    return _Headers(wrapped)
