"""A throwaway PostgreSQL server: ``initdb`` and ``pg_ctl`` on a temporary directory and a free port.

For the history tests (a session fixture in ``conftest.py``) and ``benchmarks/history_shards.py``.
The binaries are found on ``PATH``, else where Debian and Ubuntu's ``postgresql`` package puts them
(``/usr/lib/postgresql/<version>/bin``). ``initdb`` refuses to run as root, so under root (a CI
container) the server runs as the ``postgres`` account that package creates. Durability is off
(``fsync``, ``synchronous_commit``, ``full_page_writes``): the server lives for one test session, and a
crash of the client, which is what the tests kill, is still rolled back by the server.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

#: set (as ``.ci/run`` does) to fail instead of skipping when no server binary can be found
REQUIRE_ENV = "PYTEST_NPU_REQUIRE_POSTGRES"
USER = "npu"


def find_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, newest version first; None without a server."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                      if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in versions]
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One server; :meth:`database` hands out a fresh, empty database URL per caller."""

    def __init__(self, binaries: Path):
        self.binaries = binaries
        self.directory = Path(tempfile.mkdtemp(prefix="npu-pg-"))
        self.port = 0
        self.account: pwd.struct_passwd | None = None
        if os.geteuid() == 0:                      # initdb refuses root: run the server as postgres
            try:
                self.account = pwd.getpwnam("postgres")
            except KeyError:
                self.account = pwd.getpwnam("nobody")
            os.chown(self.directory, self.account.pw_uid, self.account.pw_gid)
        self.directory.chmod(0o755)

    def _run(self, *args: str) -> None:
        command = [str(self.binaries / args[0]), *args[1:]]
        account = {} if self.account is None else {      # no runuser/su needed (nor on PATH)
            "user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": [],
            "env": {**os.environ, "HOME": self.account.pw_dir, "USER": self.account.pw_name}}
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.directory, **account)
        if done.returncode:
            log = self.directory / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{tail}")

    def start(self) -> Server:
        data = self.directory / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync",
                  "--no-instructions")
        for attempt in range(3):                   # a free port can be taken between probing and binding
            self.port = _free_port()
            options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
                       f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            try:
                self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.directory / "server.log"),
                          "-w", "-t", "30", "start")
                return self
            except RuntimeError:
                if attempt == 2:
                    raise
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """The URL of a new, empty database on this server."""
        import psycopg

        name = f"h_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')      # an identifier: cannot be a parameter
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")
        except (RuntimeError, OSError, subprocess.SubprocessError):
            pass
        shutil.rmtree(self.directory, ignore_errors=True)
