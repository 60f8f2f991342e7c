"""A real PostgreSQL server for the tests, started here and stopped after.

The binaries: the machine's Debian PostgreSQL (``/usr/lib/postgresql/<newest>/bin``),
else the ones the ``pgserver`` wheel ships (the dev extra installs it, so a fresh machine
has a server with ``make test``). ``initdb`` on a temporary folder, ``postgres`` on
loopback on a free port, password login (scram-sha-256) for every connection. PostgreSQL
refuses to run as root: as root, the server runs as ``nobody`` (``setpriv``), the
folder handed to it.

Each test gets a database of its own (``PostgresServer.new_database``), owned by an
application role that is not a superuser, as in production (``deploy/postgres``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

#: The application role kbflow logs in as in the tests (not a superuser).
APP_ROLE = "kbflow_app"
_ADMIN = "kbflow_admin"


def binaries() -> Path:
    """The folder with ``initdb``, ``pg_ctl`` and ``postgres``.

    Raises:
        FileNotFoundError: neither Debian's PostgreSQL nor the ``pgserver`` wheel is
            installed (``pip install -e '.[dev]'`` installs the wheel).
    """
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                    key=lambda folder: int(folder.parent.name)
                    if folder.parent.name.isdigit() else 0)
    for folder in reversed(debian):
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    try:
        import pgserver
    except ImportError:
        raise FileNotFoundError("no PostgreSQL: install Debian's postgresql or "
                                "`pip install -e '.[dev]'` (pgserver)") from None
    folder = Path(pgserver.__file__).parent / "pginstall" / "bin"
    if not (folder / "initdb").is_file():
        raise FileNotFoundError(f"pgserver ships no initdb in {folder}")
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """A running server: ``admin_url`` (superuser) and the application role's password."""

    folder: Path
    bin: Path
    port: int
    admin_password: str
    app_password: str
    run_as: list[str]

    @property
    def admin_url(self) -> str:
        return (f"postgresql://{_ADMIN}:{self.admin_password}@127.0.0.1:{self.port}/"
                "postgres")

    def url(self, database: str, *, user: str = APP_ROLE, password: str | None = None
            ) -> str:
        """The URL of ``database`` as ``user`` (default: the application role)."""
        return (f"postgresql://{user}:{password or self.app_password}@127.0.0.1:"
                f"{self.port}/{database}")

    def new_database(self) -> str:
        """A fresh empty database owned by the application role; its URL."""
        name = f"kbflow_test_{secrets.token_hex(6)}"
        with psycopg.connect(self.admin_url, autocommit=True) as db:
            db.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(APP_ROLE)))
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.run_as, str(self.bin / "pg_ctl"), "stop", "-D",
                        str(self.folder / "data"), "-m", "immediate", "-w"],
                       capture_output=True, check=False, timeout=60)


def _reachable_by_others(path: Path) -> bool:
    """Whether every folder above ``path`` lets other users through (``o+x``)."""
    return all(parent.stat().st_mode & 0o001 for parent in [path, *path.parents])


def _as_unprivileged(folder: Path) -> list[str]:
    """The command prefix that runs the server as ``nobody`` when we are root (and
    hands it ``folder``); nothing otherwise."""
    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam("nobody")
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
            "--clear-groups"]


@contextlib.contextmanager
def running_postgres(bin_folder: Path | None = None) -> Iterator[PostgresServer]:
    """Start a PostgreSQL on loopback in a temporary folder; stop and remove it after.

    Args:
        bin_folder: the server's binaries; default ``binaries()``.

    Raises:
        FileNotFoundError: no PostgreSQL binaries (see ``binaries``).
        RuntimeError: initdb or the server failed (the message has its log).
    """
    bin_folder = bin_folder or binaries()
    folder = Path(tempfile.mkdtemp(prefix="kbflow-pg-"))
    folder.chmod(0o755)
    admin_password, app_password = secrets.token_hex(16), secrets.token_hex(16)
    (folder / "pw").write_text(admin_password + "\n")
    (folder / "socket").mkdir()
    if os.geteuid() == 0 and not _reachable_by_others(bin_folder):
        # e.g. the pgserver wheel in a venv under /root: nobody could not run it there,
        # so the installation is copied into the server's folder, with the libraries
        # its binaries find relative to themselves (the wheel's ``pgserver.libs``).
        root = next((parent for parent in bin_folder.parents if parent.name == "pgserver"),
                    bin_folder.parent)
        for tree in (root, root.with_name(root.name + ".libs")):
            if tree.is_dir():
                shutil.copytree(tree, folder / "install" / tree.name, symlinks=True)
        bin_folder = folder / "install" / root.name / bin_folder.relative_to(root)
    run_as = _as_unprivileged(folder)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    server = PostgresServer(folder, bin_folder, _free_port(), admin_password, app_password,
                            run_as)
    try:
        done = subprocess.run(
            [*run_as, str(bin_folder / "initdb"), "-D", str(folder / "data"), "-U", _ADMIN,
             "--auth=scram-sha-256", f"--pwfile={folder / 'pw'}", "-E", "UTF8",
             "--no-sync"], capture_output=True, text=True, env=env, check=False, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        options = (f"-h 127.0.0.1 -p {server.port} -k {folder / 'socket'} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        done = subprocess.run(
            [*run_as, str(bin_folder / "pg_ctl"), "start", "-D", str(folder / "data"), "-w",
             "-t", "60", "-l", str(folder / "server.log"), "-o", options],
            capture_output=True, text=True, env=env, check=False, timeout=90)
        if done.returncode != 0:
            log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
            raise RuntimeError(f"postgres did not start: {done.stderr.strip()} {log[-2000:]}")
        with psycopg.connect(server.admin_url, autocommit=True) as db:
            db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(APP_ROLE), sql.Literal(app_password)))
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
