"""The dashboard's live updates: server-sent events fed by the dashboard's shared tail."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Final

import trio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from durable_jobs._domain.ids import KINDS, check_instance_id, instance_uuid
from durable_jobs._errors import DurableJobsError, ValidationError
from durable_jobs._records import RecordedEvent
from durable_jobs._store.base import Store
from durable_jobs._tools.args import MAX_POSITION
from durable_jobs._tools.views import InstanceSummary
from durable_jobs.maintenance import TailEvent, tail_position
from durable_jobs.ui import _shared_tail
from durable_jobs.ui._dashboard import (
    Dashboard,
    LiveSlot,
    _dash,
    _param,
    cross_site,
    instance_id_of,
)
from durable_jobs.ui._shared_tail import follow

__all__ = ["events_stream"]

log = logging.getLogger("durable_jobs.ui")

#: When a browser refused a live stream (the cap) may try again, in seconds.
RETRY_AFTER: Final = 30


def _sse(event: str, html: str, position: int) -> bytes:
    lines = [f"event: {event}", f"id: {position}"]
    lines += [f"data: {line}" for line in html.splitlines() or [""]]
    return ("\n".join(lines) + "\n\n").encode()


async def events_stream(request: Request) -> Response:
    """Server-sent events: each event committed after ``after`` (or ``Last-Event-ID``).

    With ``kind``/``job``/``id``, only that instance's events, as ``record``
    (its timeline row) and ``summary`` (its status panel); else every event,
    as ``feed`` (a row of the recent-events table). A request made for a page of
    another site is refused (403) before it takes a slot: such pages could hold
    every slot, and the dashboard's own pages would get none.
    """
    foreign = cross_site(request)
    if foreign is not None:
        return PlainTextResponse(
            f"Refused: this live stream was asked for by a page of another site ({foreign}). "
            "The dashboard streams live updates to its own pages only.\n",
            status_code=403,
        )
    dash = _dash(request)
    kind, job = _param(request, "kind"), _param(request, "job")
    instance_id = instance_id_of(request.query_params)
    resume = request.headers.get("last-event-id") or _param(request, "after")
    after: int | None = None
    if resume is not None:
        try:
            after = max(0, int(resume))
        except ValueError:
            after = -1
        if not 0 <= after <= MAX_POSITION:
            msg = f"after must be a whole number from 0 to {MAX_POSITION}, not {resume[:40]!r}."
            raise ValidationError(msg) from None
    target = None
    if kind is not None and job is not None and instance_id is not None:
        if kind not in KINDS:
            msg = f"Unknown job kind {kind!r}: expected one of {', '.join(KINDS)}."
            raise ValidationError(msg)
        target = instance_uuid(kind, job, check_instance_id(instance_id))
    if after is None:
        after = await dash.run(tail_position, dash.store)

    async def render(event: TailEvent) -> bytes | None:
        if target is None:
            return _sse("feed", dash.macro("feed_row", event), event.position)
        if event.instance_uuid != target:
            return None
        assert kind is not None and job is not None and instance_id is not None

        def read() -> tuple[list[RecordedEvent], InstanceSummary | None]:
            records = dash.inspector.history(
                kind,
                job,
                instance_id,
                from_version=event.version,
                to_version=event.version,
                states=False,  # a timeline row does not show it
            )
            return records, dash.inspector.status(kind, job, instance_id)

        records, summary = await dash.run(read)
        out = b"".join(
            _sse("record", dash.macro("timeline_row", r, kind, job, instance_id), event.position)
            for r in records
        )
        if summary is not None:
            out += _sse("summary", dash.macro("summary_panel", summary), event.position)
        return out

    # Taken last: nothing below can fail before the response owns the slot.
    slot = dash.live.take()
    if slot is None:
        return _refused(dash.live.limit, warn=dash.live.first_refusal())
    stop = threading.Event()
    return _LiveResponse(
        _live(dash, after, render, stop, slot),
        slot=slot,
        stop=stop,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _refused(limit: int, *, warn: bool) -> Response:
    """503 for a stream beyond the cap: the page works on, without live updates."""
    serves = f"already serves {limit} live streams, its cap" if limit else "serves no live streams"
    message = (
        f"This dashboard {serves} (open live pages). Pages still work, without live "
        "updates. To allow more, start the dashboard with --max-live N "
        "(create_app(..., max_live=N))."
    )
    if warn:
        log.warning(
            "Live stream refused: %d are open, the cap (--max-live %d). Further refusals "
            "are not logged until one is let in again.",
            limit,
            limit,
        )
    return PlainTextResponse(
        message + "\n",
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER), "Cache-Control": "no-store"},
    )


class _LiveResponse(StreamingResponse):
    """A stream that gives back its slot however it ends (disconnect, server stop, error)."""

    def __init__(
        self, content: AsyncIterator[bytes], *, slot: LiveSlot, stop: threading.Event, **kw: Any
    ) -> None:
        super().__init__(content, **kw)
        self._slot = slot
        self._stop = stop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stop.set()
            body = self.body_iterator
            if isinstance(body, AsyncGenerator):
                with trio.CancelScope(shield=True):
                    await body.aclose()  # closes its channel: the thread ends too
            self._slot.release()


async def _live(
    dash: Dashboard,
    after: int,
    render: Callable[[TailEvent], Awaitable[bytes | None]],
    stop: threading.Event,
    slot: LiveSlot,
) -> AsyncGenerator[bytes]:
    """Bytes of the events committed after ``after``: first those committed by now
    (read by a thread of this stream's, which holds ``slot`` until it ends), then
    those the dashboard's shared tail reads."""
    try:
        shared_send, shared = await dash.tail.subscribe(dash.run)
    except DurableJobsError as exc:
        log.warning("The live tail stopped: %s", exc)
        return
    try:
        last = after
        async with shared:
            yield b"retry: 2000\n\n"
            # A catch-up of more than a buffer's worth ends the stream there, as a stream
            # that falls behind does: its browser reconnects from the last event it got
            # (an after=0, say, re-read the store's whole history in one request).
            most = _shared_tail.BUFFER
            async with contextlib.aclosing(_caught_up(dash.store, after, stop, slot)) as caught:
                async for item in caught:
                    if isinstance(item, DurableJobsError):
                        log.warning("The live tail stopped: %s", item)
                        return
                    last = item.position
                    chunk = await render(item)
                    if chunk:
                        yield chunk
                    most -= 1
                    if most <= 0:
                        return
            async for item in shared:
                if isinstance(item, DurableJobsError):
                    log.warning("The live tail stopped: %s", item)
                    return
                if item.position <= last:
                    continue  # read by the catch-up already
                last = item.position
                chunk = await render(item)
                if chunk:
                    yield chunk
    finally:
        stop.set()
        dash.tail.unsubscribe(shared_send)


async def _caught_up(
    store: Store, after: int, stop: threading.Event, slot: LiveSlot
) -> AsyncGenerator[TailEvent | DurableJobsError]:
    """The events committed after ``after`` until now, read in a thread holding ``slot``."""
    send, receive = trio.open_memory_channel[TailEvent | DurableJobsError](64)
    token = trio.lowlevel.current_trio_token()

    def pump() -> None:
        try:
            for event in follow(store, after, stop, catch_up=True):
                trio.from_thread.run(send.send, event, trio_token=token)
        except DurableJobsError as exc:
            with contextlib.suppress(
                trio.RunFinishedError, trio.BrokenResourceError, trio.Cancelled
            ):
                trio.from_thread.run(send.send, exc, trio_token=token)
        except (trio.RunFinishedError, trio.BrokenResourceError, trio.Cancelled):
            pass  # the page went away, or the server is stopping
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(send.close, trio_token=token)
            slot.release()

    slot.hold()
    try:
        threading.Thread(target=pump, name="durable-jobs ui catch-up", daemon=True).start()
    except BaseException:
        slot.release()
        raise
    async with receive:
        async for item in receive:
            yield item
