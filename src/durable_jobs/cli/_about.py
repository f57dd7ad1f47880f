"""What is installed: the version, the store URL schemes and the optional extras found.

Printed by ``python -m durable_jobs`` with no arguments and by
``durable-jobs --version``. Nothing here imports the command modules, so
``_app`` can use :func:`version_option`.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import click

from durable_jobs import __version__
from durable_jobs._store.registry import store_schemes

__all__ = ["About", "Extra", "about", "about_text", "version_option"]

DISTRIBUTION = "durable-jobs"
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class Extra:
    """One optional extra (``pip install 'durable-jobs[name]'``) and its packages' versions."""

    name: str
    packages: dict[str, str | None]

    @property
    def installed(self) -> bool:
        """Whether every package of the extra is installed."""
        return all(version is not None for version in self.packages.values())


@dataclass(frozen=True)
class About:
    """The installation: versions, store schemes, extras."""

    version: str
    python: str
    store_schemes: list[str]
    extras: list[Extra]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the same."""
        return {
            "version": self.version,
            "python": self.python,
            "store_schemes": self.store_schemes,
            "extras": {
                e.name: {"installed": e.installed, "packages": e.packages} for e in self.extras
            },
        }


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _extras() -> list[Extra]:
    """The extras declared in our own metadata, but ``dev`` (our development set)."""
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return []
    packages: dict[str, dict[str, str | None]] = {}
    for requirement in requires:
        extra = _EXTRA.search(requirement)
        name = _NAME.match(requirement)
        if extra is None or name is None or extra.group(1) == "dev":
            continue
        if name.group(1).lower().replace("_", "-") == DISTRIBUTION:
            continue
        packages.setdefault(extra.group(1), {})[name.group(1)] = _installed(name.group(1))
    return [Extra(name, found) for name, found in sorted(packages.items())]


def about() -> About:
    """What is installed now."""
    return About(
        version=__version__,
        python=platform.python_version(),
        store_schemes=store_schemes(),
        extras=_extras(),
    )


def about_text() -> str:
    """:func:`about` as the lines ``--version`` prints."""
    info = about()
    lines = [
        f"durable-jobs {info.version} (Python {info.python})",
        f"store schemes: {', '.join(info.store_schemes) or 'none'}",
        "optional extras:",
    ]
    for extra in info.extras:
        found = ", ".join(
            f"{name} {version}" if version else f"{name} missing"
            for name, version in extra.packages.items()
        )
        state = "installed" if extra.installed else "not installed"
        lines.append(f"  {extra.name:<10} {state} ({found})")
    if not info.extras:
        lines.append("  (unknown: durable-jobs is not installed as a distribution)")
    return "\n".join(lines)


def _print_about(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(about_text())
    ctx.exit()


def version_option(fn: Any) -> Any:
    """``--version``: print :func:`about_text` and exit."""
    return click.option(
        "--version",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_print_about,
        help="Show the version, the store URL schemes and the optional extras found, and exit.",
    )(fn)
