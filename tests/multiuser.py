"""Real OS users for the tests of client mode (MACHINE-NOTES.md): users and a group made with useradd and
groupadd, and a Python every user can run — a venv built from /usr/bin/python3 (the default python3 may
live under a 0700 home), readable by all, that finds govcon and its dependencies either through a .pth
file (when the test's own tree is readable by all) or by installing them (a fresh CI machine).

Built once and cached under /tmp (the users persist on the machine; the venv is rebuilt when its recipe
changes). Needs root: ``skip_reason()`` says why not otherwise.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")
GROUP = "govcon-t-ops"
USERS = ("govcon-t-alice", "govcon-t-mallory")  # alice: an operator with roles; mallory: none


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "acting as several OS users needs root (useradd, runuser)"
    for tool in ("useradd", "groupadd", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is missing (a python every user can run)"
    return None


@dataclass(frozen=True)
class Users:
    python: Path          # a python every user can run, with govcon importable
    group: str
    alice: str
    mallory: str

    def run(self, user: str, argv: list[str], env: dict[str, str], *, cwd: Path | None = None,
            input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """``argv`` as ``user`` (runuser), with exactly ``env`` (plus PATH and HOME)."""
        base = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        assigns = [f"{k}={v}" for k, v in {**base, **env}.items()]
        return subprocess.run(["runuser", "-u", user, "--", "env", "-i", *assigns, *argv], cwd=cwd or "/",
                              input=input, capture_output=True, timeout=timeout)

    def govcon(self, user: str, args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
        return self.run(user, [str(self.python), "-m", "console", *args], env, **kw)


def _sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


def ensure_users() -> None:
    if _sh("getent", "group", GROUP).returncode != 0:
        _sh("groupadd", "--system", GROUP)
    for user in USERS:
        if _sh("id", "-u", user).returncode != 0:
            made = _sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user)
            if made.returncode != 0 and _sh("id", "-u", user).returncode != 0:
                raise RuntimeError(f"useradd {user}: {made.stderr}")
        for _ in range(50):  # usermod fails while another process holds /etc/group's lock: retry, then check
            if GROUP in _sh("id", "-nG", user).stdout.split() or _sh("usermod", "-a", "-G", GROUP, user).returncode == 0:
                break
            time.sleep(0.1)
        if GROUP not in _sh("id", "-nG", user).stdout.split():
            raise RuntimeError(f"could not add {user} to {GROUP}")


def _readable_by_all(path: Path) -> bool:
    """Every directory up to ``path`` searchable by others, and ``path`` readable by them."""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
        except OSError:
            return False
        if not mode & 0o005 if p.is_dir() else not mode & 0o004:
            return False
    return True


def ensure_python() -> Path:
    """The shared venv's python (built at most once per recipe)."""
    site = Path(sysconfig.get_paths()["purelib"])
    platsite = Path(sysconfig.get_paths()["platlib"])
    linked = _readable_by_all(ROOT / "console" / "cli.py") and _readable_by_all(site)
    recipe = f"{SYSTEM_PYTHON}|{ROOT}|{site}|{platsite}|{linked}|{sys.version_info[:2]}|v1"
    venv = Path("/tmp") / f"govcon-multiuser-venv-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    marker = venv / ".ready"
    if not marker.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True, capture_output=True)
        target = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     check=True, capture_output=True, text=True).stdout.strip())
        if linked:  # the same 3.11 ABI: the test's own packages, read in place
            (target / "govcon-tests.pth").write_text("\n".join(dict.fromkeys(map(str, (ROOT, site, platsite)))) + "\n")
        else:  # a tree other users cannot read (e.g. under /root): install a copy
            lock = ROOT / "requirements.lock"
            extra = ["-c", str(lock)] if lock.exists() else []
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", *extra, str(ROOT)], check=True,
                           capture_output=True)
        subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
        marker.write_text(recipe)
    elif not linked:  # the copy of govcon itself follows the tree under test
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(ROOT)],
                       check=True, capture_output=True)
        subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
    return python


def users() -> Users:
    """The users and the venv, made under a lock: xdist workers and other checkouts' test runs on the same
    machine share both, and two builders of one venv would break each other's."""
    import fcntl
    with open("/tmp/govcon-multiuser.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ensure_users()
        return Users(ensure_python(), GROUP, USERS[0], USERS[1])
