"""MkDocs hooks: pages that are generated from the code at build time, so they cannot go stale.

``<!-- cli-reference -->`` in a page becomes the ``--help`` text of the
``durable-jobs`` command and of each of its subcommands, read from the click
app itself.
"""

from __future__ import annotations

from typing import Any

import click

PLACEHOLDER = "<!-- cli-reference -->"


def _help(command: click.Command, path: list[str]) -> str:
    with click.Context(command, info_name=" ".join(path)) as ctx:
        return command.get_help(ctx)


def cli_reference() -> str:
    """The Markdown reference of the command line: one section per command."""
    from durable_jobs.cli import app

    parts = ["## `durable-jobs`", "", "```text", _help(app, ["durable-jobs"]), "```", ""]
    for name in sorted(app.commands):
        command = app.commands[name]
        parts += [f"## `{name}`", "", "```text", _help(command, ["durable-jobs", name]), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the placeholder with the generated reference."""
    if PLACEHOLDER in markdown:
        markdown = markdown.replace(PLACEHOLDER, cli_reference())
    return markdown
