"""``durable-jobs check --app module:attribute``: can this code read the store?

It imports the app's :class:`~durable_jobs.Registry`, decodes every live
instance's state and pending events with it (types, versions, upcasters) and
lists those that would fail; exit code 1 if any. It writes nothing.
"""

from __future__ import annotations

import importlib
import sys

import click
from rich.text import Text

from durable_jobs._definitions.registry import Registry
from durable_jobs._domain.ids import KINDS
from durable_jobs._errors import ConfigurationError
from durable_jobs._tools.inspector import Inspector
from durable_jobs.cli._app import (
    CliState,
    app,
    console,
    emit_json,
    json_option,
    opened_store,
    printable,
    set_exit_code,
    store_option,
)

__all__ = ["load_registry"]

CHECK_EPILOG = """\b
Examples:
  durable-jobs --store sqlite:///jobs.db check --app myapp.jobs:registry
  durable-jobs check --app myapp.jobs:registry --json --store postgresql://app@db/jobs
\b
--json prints {"ok": bool, "checked": N, "failures": [{"kind", "job",
"instance_id", "what", "type_version", "problem"}], "not_checked": [{"kind",
"job", "live_instances": N}]}. Exit code 1 if any instance would fail.
Live instances of jobs the app does not define are not checked: they are
listed (not_checked), and no runtime of this app would run them.
"""


def load_registry(spec: str) -> Registry:
    """The :class:`Registry` named ``module:attribute`` (the module is imported)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        msg = f"--app must be module:attribute (e.g. myapp.jobs:registry), got {spec!r:.120}."
        raise ConfigurationError(msg)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the working directory's modules
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        msg = f"Could not import {module_name!r} (from --app): {type(exc).__name__}: {exc}"
        raise ConfigurationError(msg) from exc
    value: object = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            msg = f"{module_name!r} has no attribute {attribute!r} (from --app)."
            raise ConfigurationError(msg) from None
    if not isinstance(value, Registry):
        kind = type(value).__name__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        msg = f"--app {spec!r:.120} is {article} {kind}, not a durable_jobs.Registry."
        raise ConfigurationError(msg)
    return value


@app.command(epilog=CHECK_EPILOG)
@click.option(
    "--app",
    "app_spec",
    required=True,
    metavar="MODULE:ATTRIBUTE",
    help="The app's Registry, e.g. myapp.jobs:registry.",
)
@store_option
@json_option
@click.pass_obj
def check(state: CliState, *, app_spec: str, as_json: bool) -> None:
    """Decode every live instance with the app's job definitions; list those that fail.

    Run it before deploying changed state or event types. Reads only.
    """
    registry = load_registry(app_spec)
    defined = {(kind, name) for kind in KINDS for name in registry.names(kind)}
    with opened_store(state, must_exist=True) as store:
        inspector = Inspector(store)
        report = inspector.check(registry)
        # Jobs the app does not define: their live instances were not checked.
        skipped = [
            (s.kind, s.job, s.total - s.by_status.get("terminated", 0))
            for s in inspector.stats()
            if (s.kind, s.job) not in defined
        ]
        skipped = [(kind, job, live) for kind, job, live in skipped if live]
    if report.failures:
        set_exit_code(1)
    if as_json:
        emit_json(
            {
                **report.to_json(),
                "not_checked": [
                    {"kind": kind, "job": job, "live_instances": live}
                    for kind, job, live in skipped
                ],
            }
        )
        return
    out = console()
    for f in report.failures:
        out.print(
            Text(
                f"FAIL {f.kind} {f.job} {f.instance_id!r} {f.what} "
                f"(type version {f.type_version}): {f.problem}"
            )
        )
    verdict = "all readable" if report.ok else f"{len(report.failures)} would fail"
    out.print(Text(f"Checked {report.checked} live instance(s): {verdict}."))
    if skipped:
        jobs = ", ".join(f"{kind} {job} ({live})" for kind, job, live in skipped)
        out.print(
            Text(
                f"Not checked: {sum(live for _, _, live in skipped)} live instance(s) of "
                f"jobs the app does not define: {printable(jobs)}."
            )
        )
