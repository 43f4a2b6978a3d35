"""The kill switch's second path: a marker file whose mere presence engages it.

The store is the record of the kill switch, but a store that cannot be written (a full disk, a lock
held too long, a read-only failover) must not leave the switch unusable while the gate keeps allowing.
Creating an empty file needs no database and no free block (only a free inode), so it works on a full
filesystem; who engaged, when and why are written into the file when that still works. Every gate
checks the marker first, with one ``open`` and no store. The engagement is recorded in the store once it
can be written again (engine/overrides.py), and releasing — which needs the store and the role —
removes the file.

Where the file lives (``kill_switch_marker`` in the config overrides it): beside a SQLite store
(``<store>.kill-switch``); for a PostgreSQL store in the service's runtime directory: ``/run/govcon``
when it exists (the unit's ``RuntimeDirectory=govcon``, the same path for every user of the host), else
``$XDG_RUNTIME_DIR/govcon``, else ``~/.local/state/govcon``. A marker is seen by the processes of one
host: on a shared store that is the service's host, where the gates are.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.clock import isoformat
from engine.errors import Conflict

if TYPE_CHECKING:
    from storage.store import Store

MARKER_NAME = "kill-switch"
SQLITE_SUFFIX = ".kill-switch"
SERVICE_RUNTIME_DIR = Path("/run/govcon")
_READ_MAX = 4096
#: the details also go into an extended attribute: on a full disk a file takes no content, but an
#: xattr (kept in the inode on ext4, in memory on tmpfs) usually still fits
XATTR = "user.govcon.kill-switch"
_XATTR_MAX = 240
#: errors that mean "there is no such file" (a missing directory, or a path through a plain file)
_ABSENT = (errno.ENOENT, errno.ENOTDIR)


class MarkerError(Conflict):
    """The marker file could not be created or removed; the message names the path."""


@dataclass(frozen=True)
class MarkerInfo:
    """An engaged marker: who, when and why when the file says so (None when it is empty or unreadable)."""

    path: str
    by: str | None = None
    at: datetime | None = None
    reason: str | None = None
    identity: tuple[int, int] = (0, 0)  # (inode, mtime in ns): which file this was, for a careful clear

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "engaged": True, "by": self.by, "at": isoformat(self.at), "reason": self.reason}


def default_marker_path(dialect: str, database: str | None, env: Mapping[str, str] | None = None) -> Path:
    """Beside a SQLite file; the service's runtime directory for PostgreSQL (see the module's docstring)."""
    env = os.environ if env is None else env
    if dialect == "sqlite" and database and database != ":memory:":
        return Path(database + SQLITE_SUFFIX)
    if SERVICE_RUNTIME_DIR.is_dir():
        return SERVICE_RUNTIME_DIR / MARKER_NAME
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "govcon" / MARKER_NAME
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "govcon" / MARKER_NAME


def marker_path_for(store: Store) -> Path:
    return default_marker_path(store.dialect, store.engine.url.database)


class KillMarker:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"KillMarker({str(self.path)!r})"

    def engaged(self) -> MarkerInfo | None:
        """The marker, or None. One open and one read; a marker that exists but cannot be read still
        engages, and so does a path that cannot be checked at all (fail closed: the reason says why)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return None
            return self._unreadable(exc)
        try:
            st = os.fstat(fd)
            try:
                content = os.read(fd, _READ_MAX)
            except OSError:
                content = b""
            if not content:  # written on a full disk: the details may be in the xattr
                try:
                    content = os.getxattr(fd, XATTR)
                except (OSError, AttributeError):
                    pass
        finally:
            os.close(fd)
        return _parse(str(self.path), content, (st.st_ino, st.st_mtime_ns))

    def _unreadable(self, exc: OSError) -> MarkerInfo | None:
        try:
            st = os.stat(self.path)
        except OSError as again:
            if again.errno in _ABSENT:
                return None  # removed between the two calls
            return MarkerInfo(str(self.path), reason=f"cannot check the marker file: {again.strerror}")
        return MarkerInfo(str(self.path), reason=f"marker file unreadable ({exc.strerror})",
                          identity=(st.st_ino, st.st_mtime_ns))

    def engage(self, actor: str, reason: str, at: datetime, *, _retry: bool = True) -> tuple[MarkerInfo, bool]:
        """Create the marker; returns (the marker, whether this call created it). The details are
        written when the disk takes them; an empty file engages all the same."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MarkerError(f"cannot create the directory of the kill-switch marker file {self.path}: "
                              f"{exc.strerror or exc}") from exc
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            existing = self.engaged()
            if existing is not None:
                return existing, False
            if not _retry:
                raise MarkerError(f"cannot create the kill-switch marker file {self.path}: it exists and "
                                  f"does not") from None
            return self.engage(actor, reason, at, _retry=False)  # removed meanwhile: once more
        except OSError as exc:
            raise MarkerError(f"cannot create the kill-switch marker file {self.path}: {exc.strerror}") from exc
        body = json.dumps({"by": actor, "at": isoformat(at), "reason": reason}, ensure_ascii=True)
        try:
            data = (body + "\n").encode()
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, "short write")
                os.fsync(fd)
            except OSError:  # a full disk: an empty file engages; the details go where they still fit
                os.ftruncate(fd, 0)
                os.setxattr(fd, XATTR, _short_details(actor, reason, at))
        except (OSError, AttributeError):
            pass  # no xattr either: the file alone engages, its details unknown
        finally:
            os.close(fd)
        _fsync_dir(self.path.parent)
        return self.engaged() or MarkerInfo(str(self.path), actor, at, reason), True

    def check_removable(self) -> None:
        """Raise MarkerError when ``clear`` could not remove the file (its directory is not writable)."""
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise MarkerError(f"cannot remove the kill-switch marker file {self.path}: its directory is not "
                              f"writable by this user; the kill switch stays engaged")

    def clear(self, expected: MarkerInfo | None = None) -> bool:
        """Remove the marker; with ``expected``, only if it is still that file (not one made since).
        Returns whether a file was removed; raises MarkerError when one is there and cannot be."""
        if expected is not None:
            current = self.engaged()
            if current is None:
                return False
            if current.identity != expected.identity:
                raise MarkerError(f"the kill-switch marker file {self.path} changed while it was being released "
                                  f"(engaged again?): it stays, and the kill switch stays engaged")
        try:
            os.unlink(self.path)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return False
            raise MarkerError(f"cannot remove the kill-switch marker file {self.path}: {exc.strerror}; "
                              f"the kill switch stays engaged") from exc
        _fsync_dir(self.path.parent)
        return True


def _short_details(actor: str, reason: str, at: datetime) -> bytes:
    """The details as JSON of at most _XATTR_MAX bytes (the reason shortened to fit)."""
    for keep in (120, 60, 20, 0):
        data = json.dumps({"by": actor[:60], "at": isoformat(at), "reason": reason[:keep]},
                          ensure_ascii=True).encode()
        if len(data) <= _XATTR_MAX:
            return data
    return json.dumps({"at": isoformat(at)}).encode()


def _parse(path: str, content: bytes, identity: tuple[int, int]) -> MarkerInfo:
    try:
        doc = json.loads(content.decode("utf-8")) if content.strip() else {}
    except (UnicodeDecodeError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}

    def text(key: str) -> str | None:
        value = doc.get(key)
        return value[:500] if isinstance(value, str) and value else None

    at = None
    if text("at"):
        try:
            at = datetime.fromisoformat(doc["at"])
        except (ValueError, TypeError):
            at = None
        if at is not None and at.tzinfo is None:
            at = None
    return MarkerInfo(path, text("by"), at, text("reason"), identity)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
