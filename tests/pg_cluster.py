"""A throwaway PostgreSQL cluster of a test's own (initdb/pg_ctl as the postgres user, as
.ci/postgres.sh does), on a free port and a directory of its own, so that a test may pause it
(SIGSTOP) without disturbing the shared test server."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.serve_process import free_port


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                   if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "starting a PostgreSQL cluster of its own needs root (runuser -u postgres)"
    if _bin_dir() is None or shutil.which("runuser") is None:
        return "needs PostgreSQL's server binaries (apt-get install -y postgresql)"
    return None


class Cluster:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.url = f"postgresql+psycopg://govcon:govcon@127.0.0.1:{port}/govcon"
        self.paused: list[int] = []

    def _pids(self) -> list[int]:
        postmaster = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def pause(self) -> None:
        """SIGSTOP the postmaster and every backend: the server hangs, its kernel still answers TCP."""
        self.paused = self._pids()
        for pid in self.paused:
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.paused = []


def _as_postgres(*argv: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    bindir = _bin_dir()
    directory = Path(tempfile.mkdtemp(prefix="govcon-pg-"))
    shutil.chown(directory, "postgres", "postgres")
    cluster = Cluster(directory, free_port())
    data = str(directory / "data")
    try:
        _as_postgres(str(bindir / "initdb"), "-D", data, "-U", "postgres", "--auth=trust")
        _as_postgres(str(bindir / "pg_ctl"), "-D", data, "-l", str(directory / "server.log"), "-w", "-o",
                     f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {directory} -c fsync=off", "start")
        psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-qc"]
        _as_postgres(*psql, "CREATE ROLE govcon LOGIN PASSWORD 'govcon' SUPERUSER")
        _as_postgres(*psql, "CREATE DATABASE govcon OWNER govcon")
        yield cluster
    finally:
        cluster.resume()
        with contextlib.suppress(Exception):
            _as_postgres(str(bindir / "pg_ctl"), "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(directory, ignore_errors=True)
