"""Packaging: what the sdist and wheel ship, the editable install, adapter discovery.

``stores/`` lives at the top of the repository and is installed as
``durable_jobs.stores`` through the symlink ``src/durable_jobs/stores``; these
tests check that every way of installing the project keeps that true, and that
store adapters (ours and third parties') are found through the
``durable_jobs.stores`` entry-point group.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import durable_jobs
from durable_jobs import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[1]
GROUP = "durable_jobs.stores"
OUR_STORES = ("memory", "sqlite", "postgres")
OUR_SCHEMES = {"memory", "sqlite", "postgresql"}

# What is not part of the source tree when copying it for a build.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    ".tox",
    "*.egg-info",
    "build",
    "dist",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "demo-data",
    "*.db",
    "*.db-*",
)


def _declared_entry_points() -> dict[str, str]:
    """The ``durable_jobs.stores`` entry points pyproject.toml declares."""
    with (REPO / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    return dict(project["entry-points"][GROUP])


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run ``cmd`` without the caller's PYTHONPATH; fail the test with its output if it fails."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited with {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc.stdout


def _only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) built by ``python -m build`` (the wheel is built from the sdist).

    The build runs on a copy of the tree (symlinks kept) so that it writes no
    ``build/`` or ``*.egg-info`` into the repository.
    """
    source = tmp_path_factory.mktemp("source") / "durable-jobs"
    shutil.copytree(REPO, source, symlinks=True, ignore=_NOT_SOURCE)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(source)])
    return _only(sorted(out.glob("*.tar.gz"))), _only(sorted(out.glob("*.whl")))


@pytest.mark.slow
def test_sdist_and_wheel_ship_the_stores_and_py_typed(dists: tuple[Path, Path]) -> None:
    sdist, wheel = dists

    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        entry_points_txt = whl.read(
            _only([Path(n) for n in names if n.endswith(".dist-info/entry_points.txt")]).as_posix()
        ).decode()
    assert "durable_jobs/py.typed" in names
    for data in ("ui/templates/base.html", "ui/templates/_macros.html", "ui/static/live.js"):
        assert f"durable_jobs/{data}" in names, f"the dashboard's {data} is not in the wheel"
    for module in ("__init__", *OUR_STORES):
        assert f"durable_jobs/stores/{module}.py" in names
    assert not [n for n in names if n.startswith("stores/")], "a top-level 'stores' package leaked"
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(entry_points_txt)
    assert dict(parser[GROUP]) == _declared_entry_points()

    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
    for module in ("__init__", *OUR_STORES):
        member = members[f"src/durable_jobs/stores/{module}.py"]
        assert member.isfile(), f"{member.name} is not a regular file in the sdist"
    assert "src/durable_jobs/py.typed" in members


@pytest.mark.slow
def test_wheel_works_in_a_fresh_venv(dists: tuple[Path, Path], tmp_path: Path) -> None:
    _, wheel = dists
    env_dir = tmp_path / "venv"
    # No pip in the new venv (faster); ours installs into it. No system site-packages.
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)])
    python = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(wheel)])

    work = tmp_path / "work"
    work.mkdir()
    check = textwrap.dedent(
        """
        import importlib.metadata, importlib.util, json, pathlib, sys

        import durable_jobs
        import durable_jobs.stores.memory
        import durable_jobs.stores.postgres
        import durable_jobs.stores.sqlite

        eps = importlib.metadata.entry_points(group="durable_jobs.stores")
        with durable_jobs.open_store("sqlite:///x.db") as store:
            store_class = type(store).__name__
        print(json.dumps({
            "prefix": sys.prefix,
            "sqlite_module": durable_jobs.stores.sqlite.__file__,
            "entry_points": {ep.name: ep.value for ep in eps},
            "store_class": store_class,
            "db_created": pathlib.Path("x.db").is_file(),
            "top_level_stores": importlib.util.find_spec("stores") is not None,
        }))
        """
    )
    # -I: ignore PYTHON* variables and keep the cwd off sys.path.
    report = json.loads(_run([str(python), "-I", "-c", check], cwd=work))

    assert Path(report["prefix"]).resolve() == env_dir.resolve()
    assert Path(report["sqlite_module"]).resolve().is_relative_to(env_dir.resolve())
    assert set(report["entry_points"]) >= OUR_SCHEMES
    assert report["entry_points"] == _declared_entry_points()
    assert report["store_class"] == "SQLiteStore"
    assert report["db_created"]
    assert not report["top_level_stores"]


def test_editable_install_imports_the_repo_stores_directory() -> None:
    import durable_jobs.stores.sqlite

    module = Path(durable_jobs.stores.sqlite.__file__ or "").resolve()
    assert module == (REPO / "stores" / "sqlite.py").resolve()

    ours = importlib.metadata.distribution("durable-jobs").entry_points.select(group=GROUP)
    assert {ep.name: ep.value for ep in ours} == _declared_entry_points(), (
        "the installed entry points differ from pyproject.toml: re-install the project"
    )
    assert {ep.name for ep in importlib.metadata.entry_points(group=GROUP)} >= OUR_SCHEMES
    assert set(durable_jobs.store_schemes()) >= OUR_SCHEMES


@pytest.fixture
def thirdparty_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A third-party distribution registering ``thirdparty://``, importable from tmp_path."""
    module = "dj_thirdparty_store"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from durable_jobs.stores.memory import MemoryStore


            class ThirdPartyStore(MemoryStore):
                scheme = "thirdparty"
            """
        )
    )
    info = tmp_path / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dj-thirdparty-store\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(f"[{GROUP}]\nthirdparty = {module}:ThirdPartyStore\n")
    monkeypatch.syspath_prepend(tmp_path)
    yield module
    sys.modules.pop(module, None)


def test_third_party_store_is_found_by_its_scheme(thirdparty_module: str) -> None:
    assert "thirdparty" in durable_jobs.store_schemes()
    with durable_jobs.open_store("thirdparty://") as store:
        assert isinstance(store, durable_jobs.Store)
        assert type(store).__module__ == thirdparty_module
        assert type(store).__name__ == "ThirdPartyStore"


def test_unknown_scheme_names_the_accepted_schemes() -> None:
    with pytest.raises(ConfigurationError, match="nosuch") as excinfo:
        durable_jobs.open_store("nosuch://somewhere/db")
    message = str(excinfo.value)
    for scheme in OUR_SCHEMES:
        assert f"{scheme}://" in message


def test_importing_the_library_and_running_jobs_loads_no_test_tools() -> None:
    """An application that imports durable-jobs, runs a job and the CLI's module
    does not load pytest or hypothesis (``trio.testing`` imports pytest when it is
    installed): their import time and objects stay out of production processes."""
    program = textwrap.dedent(
        """
        import sys
        from datetime import timedelta

        import trio

        import durable_jobs as dj
        import durable_jobs.cli

        registry = dj.Registry()

        @registry.continuous("t", state=int, schedule=dj.every(timedelta(milliseconds=1)))
        async def t(ctx: dj.ContinuousContext[int]) -> None:
            ctx.set_state(ctx.state + 1)

        async def main() -> None:
            async with dj.open_jobs(registry, "memory://") as jobs:
                await jobs.continuous("t").start("a", 0)
                await jobs.continuous("t").trigger("a")

        trio.run(main)
        loaded = sorted(m for m in ("pytest", "hypothesis", "trio.testing") if m in sys.modules)
        print(loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
