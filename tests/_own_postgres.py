"""A Postgres server of the test's own, to restart and stop (never the shared one).

``initdb`` into a temporary directory and ``pg_ctl`` on a free local port, with
the binaries found under ``/usr/lib/postgresql/*/bin`` (or on ``PATH``). When
the tests run as root, the server runs as the ``postgres`` user (Postgres
refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found (install the Postgres server binaries)", pytrace=False)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as ``server.crt`` and
    ``server.key`` in ``directory`` (the key readable by its owner only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


class OwnPostgres:
    """A throwaway server: :attr:`url`, :meth:`restart`, :meth:`stop`, :meth:`start`;
    ``OwnPostgres(standby_of=primary)`` is a streaming replica of another, to
    :meth:`promote`."""

    def __init__(self, *, standby_of: OwnPostgres | None = None, tls: bool = False) -> None:
        self._as: dict[str, Any] = {}
        #: With ``tls``: the server's self-signed certificate (for ``sslrootcert``); the
        #: server then takes TCP connections over TLS only.
        self.certificate: Path | None = None
        if os.geteuid() == 0:
            self._as = {"user": "postgres", "group": "postgres"}
        self.dir = Path(tempfile.mkdtemp(prefix="dj-own-pg-"))
        if self._as:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.data = self.dir / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if standby_of is None:
            self._run(
                _bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                "--no-sync", "-E", "UTF8",
            )  # fmt: skip
        else:
            # A streaming replica: a base backup with standby.signal and the primary's
            # address written (-R), read-only until promote().
            self._run(
                _bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(standby_of.port),
                "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
            )  # fmt: skip
        if tls:
            self._tls()
        self.start()

    def _tls(self) -> None:
        """A certificate for 127.0.0.1, and TCP connections without TLS refused."""
        self.certificate, key_file = make_certificate(self.data)
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
            "hostssl all all 127.0.0.1/32 trust\n"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("ssl = on\n")
        if self._as:
            entry = pwd.getpwnam("postgres")
            for path in (self.certificate, key_file, self.data / "pg_hba.conf"):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            args, capture_output=True, text=True, check=False, cwd=self.dir, **self._as
        )
        if done.returncode:
            pytest.fail(f"{' '.join(args[:2])} failed: {done.stdout}{done.stderr}")

    def _ctl(self, *args: str) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args)

    def start(self) -> None:
        """Start it; returns once it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.dir} -c fsync=off"
        )
        self._ctl("-l", str(self.dir / "log"), "-o", options, "start")

    def promote(self) -> None:
        """Make a standby the primary; returns once it takes writes."""
        self._ctl("promote")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        """Restart it (``fast`` or ``immediate``); returns once it accepts connections."""
        self.stop(mode)
        self.start()

    def close(self) -> None:
        subprocess.run(
            [_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
            cwd=self.dir,
            **self._as,
        )
        shutil.rmtree(self.dir, ignore_errors=True)
