"""A trio web app with durable jobs: Starlette on Hypercorn's trio worker.

Two jobs, one instance per user:

- ``notifications`` (debounce): every notification event for a user is
  ``add``-ed; a digest of the batch is "e-mailed" once, 10 minutes after the
  first event or at 20 events, whichever comes first;
- ``reminder`` (task): ``send`` sets a reminder that is sent at its time.

"E-mails" are JSON lines appended to an outbox file. Run it::

    pip install 'durable-jobs[examples]'
    python examples/notify_app.py --store sqlite:///notify.db --outbox outbox.jsonl --port 8000
    curl -X POST localhost:8000/users/ann/notifications -d '{"text": "new follower"}'
    curl localhost:8000/users/ann/notifications
    curl -X POST localhost:8000/users/ann/reminders -d '{"text": "call Bob", "in_seconds": 3600}'
    curl localhost:8000/users/ann/reminders

Stop it (Ctrl-C, or kill it) and start it again: pending batches and
reminders carry on where they were. ``tests/test_examples.py`` does exactly
that; ``examples/test_example_jobs.py`` tests the jobs with the pytest plugin.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from dataclasses import asdict, is_dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import durable_jobs as dj

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework


class Notification(BaseModel):
    text: str


class Reminder(BaseModel):
    text: str
    in_seconds: float = 3600


OUTBOX_ENV = "NOTIFY_OUTBOX"
registry = dj.Registry()


def deliver(message: dict[str, Any]) -> None:
    """Send an "e-mail": append it to the outbox file (``$NOTIFY_OUTBOX``)."""
    path = Path(os.environ.get(OUTBOX_ENV, "outbox.jsonl"))
    with path.open("a", encoding="utf-8") as outbox:
        outbox.write(json.dumps(message) + "\n")


@registry.debounce(
    "notifications",
    event=Notification,
    state=list[str],
    flush_after=timedelta(minutes=10),
    max_events=20,
    retry=dj.Retry(5, delay=dj.Backoff.exponential()),
)
async def send_digest(ctx: dj.DebounceContext[list[str]]) -> None:
    """One digest per batch: every text added since the last one."""
    # A quick local append; a real mailer would be an awaited async HTTP call.
    deliver({"to": ctx.instance_id, "kind": "digest", "texts": ctx.state})


@send_digest.on_event
def collect(ctx: dj.DebounceEventContext[Notification, list[str]]) -> list[str]:
    return [*(ctx.state or []), ctx.event.text]


class Reminders(BaseModel):
    pending: str | None = None
    sent: int = 0


@registry.task("reminder", event=Reminder, state=Reminders)
async def remind(ctx: dj.TaskContext[Reminders]) -> None:
    """The alarm rang (or the reminder was triggered): send it."""
    state = ctx.state or Reminders()
    if state.pending is not None:
        message = {"to": ctx.instance_id, "kind": "reminder", "text": state.pending}
        deliver(message)
        ctx.set_state(Reminders(pending=None, sent=state.sent + 1))
    ctx.cancel_schedule()  # when triggered early, the alarm is not needed any more


@remind.on_event
async def set_reminder(reminder: Reminder, ctx: dj.TaskContext[Reminders]) -> None:
    """Keep the reminder and ring at its time (a new reminder replaces the pending one)."""
    state = ctx.state or Reminders()
    ctx.set_state(state.model_copy(update={"pending": reminder.text}))
    ctx.schedule(timedelta(seconds=reminder.in_seconds))


def _json(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


class JSON(JSONResponse):
    """A JSON response that writes datetimes (the clients' results have some) as ISO 8601."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_iso).encode()


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    msg = f"{type(value).__name__} is not JSON"
    raise TypeError(msg)


def make_app(jobs: dj.Jobs) -> Starlette:
    """The web app over a running ``jobs``."""
    notifications = jobs.debounce(send_digest)
    reminders = jobs.task(remind)

    async def body(request: Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _BadRequest(exc.errors(include_url=False)) from None

    async def add_notification(request: Request) -> JSON:
        event = await body(request, Notification)
        key = request.headers.get("idempotency-key")
        result = await notifications.add(request.path_params["user"], event, idempotency_key=key)
        return JSON(_json(result), status_code=202)

    async def flush_notifications(request: Request) -> JSON:
        return JSON(_json(await notifications.flush(request.path_params["user"])))

    async def notification_status(request: Request) -> JSON:
        user = request.path_params["user"]
        status = _json(await notifications.status(user))
        return JSON({**status, "pending": await notifications.get_state(user) or []})

    async def add_reminder(request: Request) -> JSON:
        event = await body(request, Reminder)
        key = request.headers.get("idempotency-key")
        result = await reminders.send(request.path_params["user"], event, idempotency_key=key)
        return JSON(_json(result), status_code=202)

    async def reminder_status(request: Request) -> JSON:
        user = request.path_params["user"]
        state = await reminders.get_state(user)
        reminder = state.state.model_dump() if state is not None and state.state else None
        return JSON({**_json(await reminders.status(user)), "reminder": reminder})

    async def trigger_reminder(request: Request) -> JSON:
        return JSON(_json(await reminders.trigger(request.path_params["user"])))

    async def health(_: Request) -> JSON:
        return JSON({"ok": True})

    async def bad_request(_: Request, exc: Exception) -> JSON:
        assert isinstance(exc, _BadRequest)
        return JSON({"errors": exc.errors}, status_code=422)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/users/{user}/notifications", add_notification, methods=["POST"]),
            Route("/users/{user}/notifications", notification_status, methods=["GET"]),
            Route("/users/{user}/notifications/flush", flush_notifications, methods=["POST"]),
            Route("/users/{user}/reminders", add_reminder, methods=["POST"]),
            Route("/users/{user}/reminders", reminder_status, methods=["GET"]),
            Route("/users/{user}/reminders/trigger", trigger_reminder, methods=["POST"]),
        ],
        exception_handlers={_BadRequest: bad_request},
    )


class _BadRequest(Exception):
    def __init__(self, errors: Any) -> None:
        super().__init__("invalid request body")
        self.errors = errors


async def main(store: str, host: str, port: int) -> None:
    """Serve the jobs and the web app until SIGINT or SIGTERM."""
    async with dj.open_jobs(registry, store) as jobs:
        config = Config()
        config.bind = [f"{host}:{port}"]
        config.accesslog = None

        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    return

            async with trio.open_nursery() as nursery:
                bound = await nursery.start(
                    lambda task_status: serve(
                        # Starlette is an ASGI app; the two libraries type ASGI differently.
                        cast("ASGIFramework", make_app(jobs)),
                        config,
                        shutdown_trigger=stop_on_signal,
                        task_status=task_status,
                    )
                )
                print("listening on", *bound, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", default="sqlite:///notify.db", help="durable-jobs store URL")
    parser.add_argument("--outbox", default="outbox.jsonl", help="where e-mails are written")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    os.environ[OUTBOX_ENV] = args.outbox
    trio.run(main, args.store, args.host, args.port)
