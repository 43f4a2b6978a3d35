"""The operator is the OS user of the process's effective uid — never $USER or $LOGNAME, which anyone
can set."""

from __future__ import annotations

import os
import pwd


def current_operator() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"
