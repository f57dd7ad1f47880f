"""A nightly report on a cron schedule in a time zone: every day at 06:30, Paris time.

The report covers the day before, in Paris. The job's state is the next day
to report, so a report that fails is retried, and one missed while the
process was down is sent once it is back (``misfire="run_once"``) — never
skipped, never twice.

    python examples/nightly_report.py                    # serve it (SQLite store ./reports.db)
    python examples/nightly_report.py --simulate-days 4  # four days in virtual time, at once

The simulation starts on Friday 27 March 2026, before summer time begins in
Paris (Sunday 29 March): the report stays at 06:30 local time, so it moves
from 05:30 to 04:30 UTC.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import trio
import trio.testing
from pydantic import BaseModel

import durable_jobs as dj

PARIS = ZoneInfo("Europe/Paris")

#: The orders of each day (in an app: a query on your database).
ORDERS: dict[date, list[Decimal]] = {
    date(2026, 3, 27): [Decimal("50.00"), Decimal("40.00"), Decimal("30.00")],
    date(2026, 3, 29): [Decimal("15.50")],
}


class Cursor(BaseModel):
    """The next day to report on."""

    day: date


registry = dj.Registry()
#: The clock the jobs run on (a virtual one in the simulation).
clock: dj.Clock = dj.SystemClock()


def send_report(day: date, sent_at: datetime) -> None:
    """Deliver the report on ``day`` (here: print it)."""
    orders = ORDERS.get(day, [])
    local = sent_at.astimezone(PARIS)
    print(
        f"report for {day} sent at {local:%Y-%m-%d %H:%M %Z} ({sent_at:%H:%M} UTC): "
        f"{len(orders)} orders, {sum(orders, Decimal('0')):.2f} EUR"
    )


@registry.continuous(
    "nightly-report",
    state=Cursor,
    schedule=dj.cron("30 6 * * *", tz="Europe/Paris"),
    start_immediately=False,
    retry=dj.Retry(5, delay=dj.Backoff.exponential()),
)
async def nightly_report(ctx: dj.ContinuousContext[Cursor]) -> None:
    """Report every whole day (Paris time) not reported yet; usually just yesterday."""
    now = clock.now()
    today = now.astimezone(PARIS).date()
    day = ctx.state.day
    while day < today:
        send_report(day, now)
        day += timedelta(days=1)
    ctx.set_state(Cursor(day=day))


async def serve(store: str) -> None:
    """Run the report job for ever on ``store``."""
    async with dj.open_jobs(registry, store, clock=clock) as jobs:
        yesterday = clock.now().astimezone(PARIS).date() - timedelta(days=1)
        await jobs.continuous(nightly_report).start("paris", Cursor(day=yesterday))
        await trio.sleep_forever()


async def simulate(days: int) -> None:
    """``days`` days from Friday 27 March 2026, 12:00 UTC, in virtual time."""
    async with dj.open_jobs(registry, "memory://", clock=clock) as jobs:
        await jobs.continuous(nightly_report).start("paris", Cursor(day=date(2026, 3, 27)))
        await trio.sleep(days * 24 * 3600)
        await jobs.wait_idle()


def main(argv: list[str] | None = None) -> None:
    global clock  # noqa: PLW0603 - the one switch between real and virtual time
    parser = argparse.ArgumentParser(description="A nightly report at 06:30, Paris time.")
    parser.add_argument("--store", default="sqlite:///reports.db")
    parser.add_argument("--simulate-days", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    if args.simulate_days:
        clock = dj.VirtualClock(datetime(2026, 3, 27, 12, tzinfo=UTC))
        trio.run(simulate, args.simulate_days, clock=trio.testing.MockClock(autojump_threshold=0))
    else:
        trio.run(serve, args.store)


if __name__ == "__main__":
    main()
