"""A tour of durable-jobs: the three job kinds on the embedded SQLite store, in real time.

Run it (``make demo``) twice. The first run starts from nothing; the second
restarts on the same ``demo-data/jobs.db`` and picks up where the first one
stopped: the heartbeat's stored beat count, its overdue alarm (one catch-up
run), the reminder's counters and the digest's history. Each run takes about
two seconds of waiting.

- ``heartbeat`` (continuous) beats every second and counts its beats in its state.
- ``digest`` (debounce) collects page clicks; a full batch (``max_events=3``)
  flushes at once, a smaller one when ``flush_after`` (2 s) has passed since
  its first click.
- ``reminder`` (task) schedules its own alarm when it gets a note; the alarm
  runs ``execute``, which snoozes once (schedules itself again), then goes idle.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio
from pydantic import BaseModel

import durable_jobs as dj

DATA = Path("demo-data")
URL = f"sqlite:///{DATA / 'jobs.db'}"
ID = "demo"


class Beat(BaseModel):
    beats: int = 0


class Note(BaseModel):
    say: str


class Reminder(BaseModel):
    last: str
    snoozed: bool = False
    fired: int = 0


class Show:
    """Prints a timeline (seconds since the demo started) and lets main wait for milestones."""

    def __init__(self) -> None:
        self.t0 = trio.current_time()
        self.first_beat_here = True
        # Handlers wait for this, so that an overdue alarm's catch-up run (which the
        # scheduler starts as soon as open_jobs opens) prints below the demo's header.
        self.header_printed = trio.Event()
        self.timer_flush = trio.Event()
        self.reminder_done = trio.Event()
        self.tally: Counter[str] = Counter()

    def say(self, who: str, text: str) -> None:
        print(f"  {trio.current_time() - self.t0:5.2f}s  {who:<15} {text}")

    @staticmethod
    def until(when: datetime | None) -> str:
        """``when`` relative to now: ``+1.0s``, ``now`` or ``None``."""
        if when is None:
            return "None"
        seconds = (when - datetime.now(UTC)).total_seconds()
        return "now" if abs(seconds) < 0.05 else f"{seconds:+.1f}s"

    def observe(self, record: dj.RecordedEvent) -> None:
        """The observer hook: called after every commit, once per recorded event."""
        self.tally[record.name] += 1
        who = f"{record.job}/{record.instance_id}"
        if record.name == "flushed":
            self.say(who, f"[log] batch #{record.data['batch_no']} flushed, committed")
        elif record.name == "alarm_set" and record.kind == "task":
            self.say(who, f"[log] alarm set for {self.until(record.data['at'])}")
        elif record.name == "run_failed":
            self.say(who, f"[log] run failed: {record.data['message']}")


@dataclass(frozen=True)
class DemoJobs:
    registry: dj.Registry
    heartbeat: dj.ContinuousJob[Beat]
    digest: dj.DebounceJob[str, list[str]]
    reminder: dj.TaskJob[Note, Reminder]


def define_jobs(show: Show) -> DemoJobs:
    registry = dj.Registry()

    @registry.continuous("heartbeat", state=Beat, schedule=dj.every(timedelta(seconds=1)))
    async def heartbeat(ctx: dj.ContinuousContext[Beat]) -> None:
        await show.header_printed.wait()
        beats = ctx.state.beats + 1
        note = f"(run #{ctx.run_count})"
        if show.first_beat_here and beats > 1:
            note += f", continuing from the {beats - 1} beats stored by the previous run"
        show.first_beat_here = False
        show.say("heartbeat/demo", f"beat #{beats} {note}")
        ctx.set_state(Beat(beats=beats))

    @registry.debounce(
        "digest",
        event=str,
        state=list[str],
        flush_after=timedelta(seconds=2),
        max_events=3,
    )
    async def digest(ctx: dj.DebounceContext[list[str]]) -> None:
        show.say(
            "digest/demo",
            f"flush by {ctx.flush_reason}: {ctx.event_count} clicks {ctx.state}",
        )
        if ctx.flush_reason == "flush_after":
            show.timer_flush.set()

    @digest.on_event
    def fold(ctx: dj.DebounceEventContext[str, list[str]]) -> list[str]:
        return [*(ctx.state or []), ctx.event]

    @registry.task("reminder", event=Note, state=Reminder)
    async def remind(ctx: dj.TaskContext[Reminder]) -> None:
        note = ctx.state
        assert note is not None  # on_event set it before scheduling the alarm
        show.say(
            "reminder/demo",
            f"execute #{ctx.execute_count} from its alarm "
            f"(ctx.scheduled_at={show.until(ctx.scheduled_at)}): {note.last!r}",
        )
        if not note.snoozed:
            ctx.schedule(timedelta(seconds=0.5))
            ctx.set_state(note.model_copy(update={"snoozed": True, "fired": note.fired + 1}))
            show.say("reminder/demo", "snoozed: scheduled itself again in 0.5 s")
        else:
            ctx.set_state(note.model_copy(update={"fired": note.fired + 1}))
            show.reminder_done.set()

    @remind.on_event
    async def got_note(note: Note, ctx: dj.TaskContext[Reminder]) -> None:
        ctx.set_state(Reminder(last=note.say, fired=ctx.state.fired if ctx.state else 0))
        ctx.schedule(timedelta(seconds=1))

    return DemoJobs(registry, heartbeat, digest, remind)


async def tour() -> None:
    show = Show()
    defined = define_jobs(show)
    DATA.mkdir(exist_ok=True)
    async with dj.open_jobs(defined.registry, URL, observers=[show.observe]) as jobs:
        # Clients typed by the definitions: heartbeat.get_state() is a Beat | None, etc.
        heartbeat = jobs.continuous(defined.heartbeat)
        digest = jobs.debounce(defined.digest)
        reminder = jobs.task(defined.reminder)

        before = await heartbeat.status(ID)
        if before.status == "not_found":
            print(f"durable-jobs demo on {URL}: fresh start, no previous state.\n")
        else:
            task = await reminder.status(ID)
            created = (
                f"was created {task.created_at:%Y-%m-%d %H:%M:%S} UTC"
                if task.created_at
                else "was not created yet: the previous run stopped early"
            )
            print(
                f"durable-jobs demo on {URL}: restarted, picked up the previous run's state "
                f"(heartbeat/demo has {before.run_count} runs; reminder/demo {created})."
            )
            if before.next_run_at is not None and before.next_run_at < datetime.now(UTC):
                late = (datetime.now(UTC) - before.next_run_at).total_seconds()
                print(
                    f"The heartbeat's stored alarm was due {late:.1f}s ago: it runs once now "
                    "to catch up (misfire='run_once')."
                )
            print()
        show.header_printed.set()

        started = await heartbeat.start(ID, Beat())
        show.say(
            "heartbeat/demo",
            "started, first run due now"
            if started.created
            else f"already exists (created=False): kept, {started.status.run_count} runs so far",
        )
        for page in ("home", "pricing", "signup"):
            added = await digest.add(ID, page)
            show.say(
                "digest/demo",
                f"add {page!r}: {added.event_count} in batch, flush at "
                f"{show.until(added.will_flush_at)}",
            )
        sent = await reminder.send(ID, Note(say="stretch your legs"))
        show.say(
            "reminder/demo",
            f"send note ({'new instance' if sent.created else 'existing instance'}): "
            f"alarm at {show.until(sent.scheduled_at)}",
        )
        for page in ("docs", "blog"):
            added = await digest.add(ID, page)
            show.say(
                "digest/demo",
                f"add {page!r}: {added.event_count} in batch, flush at "
                f"{show.until(added.will_flush_at)}",
            )

        with trio.fail_after(10):
            await show.timer_flush.wait()
            await show.reminder_done.wait()
            await jobs.wait_idle()

        print("\nWhere things stand (client status calls):")
        hb = await heartbeat.status(ID)
        beat = await heartbeat.get_state(ID)
        assert beat is not None
        print(
            f"  heartbeat/demo  {hb.status}, {hb.run_count} runs, beats={beat.beats}, "
            f"next run at {show.until(hb.next_run_at)}"
        )
        dg = await digest.status(ID)
        flushes = sum(r.name == "flushed" for r in await digest.history(ID))
        print(f"  digest/demo     {dg.status}, {flushes} batches flushed in all")
        rs = await reminder.status(ID)
        print(
            f"  reminder/demo   {rs.status}, notes received: {rs.event_count}, "
            f"executes: {rs.execute_count}, created {rs.created_at:%H:%M:%S} UTC"
        )

        history = await reminder.history(ID)
        print(f"\nHistory of reminder/demo (the last 6 of {len(history)} records):")
        for record in history[-6:]:
            shown = ", ".join(
                f"{k}={v:%H:%M:%S}" if isinstance(v, datetime) else f"{k}={v!r}"
                for k, v in record.data.items()
                if k not in ("duration", "expired_keys")
            )
            at = record.at.strftime("%H:%M:%S.%f")[:-3]
            print(f"  v{record.version:<3} {at}  {record.name:<14} {shown}")

        seen = ", ".join(f"{name} {n}" for name, n in sorted(show.tally.items()))
        print(f"\nThe observer saw {show.tally.total()} committed records: {seen}.")

    print(
        f"\nStopped. Everything is committed in {DATA / 'jobs.db'}: run `make demo` again and "
        "it restarts from there (rm -r demo-data to start fresh)."
    )


def main() -> int:
    trio.run(tour)
    return 0


if __name__ == "__main__":
    sys.exit(main())
