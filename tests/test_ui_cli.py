"""``durable-jobs ui`` refuses bad settings with one clear line, printing no password."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import durable_jobs as dj
from durable_jobs.cli import run


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    dj.open_store(url).close()
    return url


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ui", "--help")
    assert code == 0
    for option in ("--host", "--port", "--allow-actions", "--auth-env", "--store"):
        assert option in out


def test_a_missing_sqlite_file_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.db"
    code, _, err = _run(capsys, "ui", "--store", f"sqlite:///{missing}")
    assert code == 1
    assert "does not exist" in err
    assert not missing.exists()


@pytest.mark.parametrize("value", [None, "", "justapassword", ":pw", "user:"])
def test_auth_env_must_hold_user_and_password(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    store_url: str,
    value: str | None,
) -> None:
    if value is None:
        monkeypatch.delenv("DASH_AUTH", raising=False)
    else:
        monkeypatch.setenv("DASH_AUTH", value)
    code, out, err = _run(capsys, "ui", "--store", store_url, "--auth-env", "DASH_AUTH")
    assert code == 1
    assert err.startswith("error: --auth-env DASH_AUTH: set $DASH_AUTH to 'user:password'")
    if value:
        assert value not in out + err.replace("'user:password'", "")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::"])
def test_actions_on_another_address_need_auth(
    capsys: pytest.CaptureFixture[str], store_url: str, host: str
) -> None:
    """Anyone who could reach it could terminate and purge: refused before serving."""
    code, out, err = _run(capsys, "ui", "--store", store_url, "--host", host, "--allow-actions")
    assert code == 1
    assert err.startswith(f"error: --allow-actions on {host} needs --auth-env")
    assert "Dashboard on" not in out


def test_a_busy_port_is_an_error(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = _run(capsys, "ui", "--store", store_url, "--port", str(port))
    assert code == 1
    assert err.startswith(f"error: Cannot listen on 127.0.0.1:{port}:")
