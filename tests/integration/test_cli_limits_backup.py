"""`--limit` is checked everywhere (1..100,000, the flag named by argparse) and `db backup` to a place it
cannot write is a one-line error naming the path (issue 11 pt 6)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import OPERATOR

LIMITED = [("audit", "list"), ("events", "list"), ("alerts", "list"), ("gate", "log"), ("actions", "list")]


@pytest.mark.parametrize("argv", LIMITED)
@pytest.mark.parametrize("value", ["99999999999999999999", "-5", "0", "100001", "ten"])
def test_a_bad_limit_is_an_argparse_error_naming_the_flag(cli, argv, value, capsys):
    with pytest.raises(SystemExit) as exited:
        cli(*argv, f"--limit={value}")
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "argument --limit:" in err
    assert ("the range is 1..100,000" in err) if value != "ten" else "'ten' is not a whole number" in err
    assert "Traceback" not in err


def test_limits_at_the_edges_work(gov, cli, me):
    gov.grant_role(OPERATOR, me, "ops-lead")
    for argv in LIMITED:
        for value in ("1", "100000"):
            r = cli(*argv, "--limit", value)
            assert r.code == 0, (argv, value, r.err)
    assert len(cli("audit", "list", "--limit", "1", "--json").json()) == 1


@pytest.fixture
def sqlite_cli(sqlite_url, clock, monkeypatch):
    """The CLI on a SQLite store (backup copies SQLite stores only)."""
    from engine.governance import Governance
    from storage.store import Store
    from tests.conftest import T0
    from tests.integration.conftest import CliResult

    store = Store(sqlite_url)
    Governance(store, clock).init_store(OPERATOR, phase_started=T0)
    store.dispose()
    monkeypatch.setenv("GOVCON_DATABASE_URL", sqlite_url)

    def run(*argv):
        import io

        from console.cli import main
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), clock=clock, out=out, err=err)
        return CliResult(code, out.getvalue(), err.getvalue())
    return run


def _one_line_error(r, *needles: str) -> None:
    assert r.code == 1, (r.code, r.out, r.err)
    assert r.out == "" and r.err.count("\n") == 1 and r.err.startswith("govcon: cannot back up to ")
    assert "Traceback" not in r.err
    for n in needles:
        assert n in r.err, (n, r.err)


def test_backup_into_a_missing_directory(sqlite_cli, tmp_path):
    target = tmp_path / "nope" / "x.sqlite"
    _one_line_error(sqlite_cli("db", "backup", str(target)), str(target), f"the directory {target.parent} does "
                                                                         "not exist")
    assert not target.parent.exists()  # nothing made


def test_backup_onto_a_directory(sqlite_cli, tmp_path):
    _one_line_error(sqlite_cli("db", "backup", str(tmp_path)), str(tmp_path), "it is a directory")


def test_backup_below_a_file(sqlite_cli, tmp_path):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "x.sqlite"
    _one_line_error(sqlite_cli("db", "backup", str(target)), str(target), "is not a directory")


def test_backup_into_an_unwritable_directory(sqlite_cli, tmp_path):
    if os.geteuid() == 0:  # root writes anywhere on a normal filesystem; /proc refuses even root
        target = Path("/proc/govcon-backup.sqlite")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = ro / "x.sqlite"
    _one_line_error(sqlite_cli("db", "backup", str(target)), str(target))
    assert not target.exists() and not Path(str(target) + ".partial").exists()


def test_a_good_backup_still_works(sqlite_cli, tmp_path):
    target = tmp_path / "copy.sqlite"
    r = sqlite_cli("db", "backup", str(target))
    assert r.code == 0 and target.stat().st_size > 0 and str(target) in r.out


def test_a_backup_is_readable_by_its_owner_only_whatever_the_umask(sqlite_cli, tmp_path):
    """The copy holds what the store does (token hashes, sinks' routing keys) and the store is 0600: with the
    usual umask 022 the copy was 0644, readable by any user of the host."""
    old = os.umask(0o022)
    try:
        for name, extra in (("plain.sqlite", ()), ("packed.sqlite.gz", ("--compress",))):
            r = sqlite_cli("db", "backup", str(tmp_path / name), *extra)
            assert r.code == 0, r.err
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        os.umask(old)


def test_a_compressed_backup_with_retention_of_older_ones(sqlite_cli, tmp_path):
    """Seed 001's daily backup: a gzipped copy, and backups of the same family older than --keep go."""
    import gzip
    import sqlite3
    import time

    backups = tmp_path / "backups"
    backups.mkdir()
    old, recent, other = (backups / "governance-20260101.db.gz", backups / "governance-20261201.db.gz",
                          backups / "notes-20260101.txt")
    for path in (old, recent, other):
        path.write_bytes(b"x")
    now = time.time()
    os.utime(old, (now - 40 * 86400, now - 40 * 86400))
    os.utime(other, (now - 40 * 86400, now - 40 * 86400))
    target = backups / "governance-20261206.db.gz"
    r = sqlite_cli("db", "backup", str(target), "--keep", "30d")
    assert r.code == 0, r.err
    assert "removed 1 backup(s) older than 30 days" in r.out and old.name in r.out
    assert not old.exists() and recent.exists() and other.exists()
    restored = tmp_path / "restored.db"
    restored.write_bytes(gzip.decompress(target.read_bytes()))
    with sqlite3.connect(restored) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM audit_log").fetchone()[0] >= 1
    assert target.stat().st_size < restored.stat().st_size / 2  # compressed
