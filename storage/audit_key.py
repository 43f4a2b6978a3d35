"""The audit key's file: 32 random bytes as hex, mode 0600, kept outside the store.

Whoever can write the store but cannot read this file cannot recompute a keyed chain (storage/audit.py).
Back it up apart from the store: a backup of both in one place is a backup an attacker rewrites together.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from storage.audit import AuditKey


class AuditKeyError(RuntimeError):
    """The key file exists but cannot be used; the message names the path and why."""


def load(path: Path) -> AuditKey | None:
    """The key in ``path``; None when there is no such file. A file others may read is refused."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit key file {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise AuditKeyError(f"the audit key file {path} is not a regular file")
        if mode & 0o077:
            raise AuditKeyError(f"the audit key file {path} has mode {stat.S_IMODE(mode):04o}: others may read "
                                f"it; run `chmod 600 {path}`")
        text = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    try:
        return AuditKey(bytes.fromhex(text))
    except ValueError:
        raise AuditKeyError(f"the audit key file {path} does not hold a key (64 hex digits expected)") from None


def create(path: Path) -> AuditKey:
    """A new key in a new file (mode 0600, never over an existing one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AuditKeyError(f"the audit key file {path} exists already; it is never overwritten") from None
    except OSError as exc:
        raise AuditKeyError(f"cannot create the audit key file {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secret.hex() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return AuditKey(secret)


def load_or_create(path: Path) -> tuple[AuditKey, bool]:
    """(the key, whether it was created now)."""
    key = load(path)
    if key is not None:
        return key, False
    return create(path), True
