"""The config file's shape: every table and key govcon reads, with the type it must have.

``check`` runs when the file is loaded, so a misspelled table or key (``[schedular]``, ``weekly_cyle``)
is refused at start with the file, the key and a did-you-mean, instead of being silently ignored. The
values' meaning (durations, URLs, limits) is still judged where they are used; tables whose entries are
named by the user (``[policies.NAME]``, ``[[alerts.sinks]]``) are judged by their own loaders
(engine/policies.py, engine/alerts.py), which refuse unknown fields there.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast


@dataclass(frozen=True)
class Kind:
    """A value's expected TOML type, and how to say it to an operator."""
    name: str
    types: tuple[type, ...]
    item: type | None = None  # for arrays: the type of each element

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) and bool not in self.types:
            return False  # TOML's true is not a number
        if not isinstance(value, self.types):
            return False
        items = cast("list[Any]", value)  # only arrays' kinds name an item type
        return self.item is None or all(isinstance(v, self.item) and not isinstance(v, bool) for v in items)


TEXT = Kind("a string", (str,))
WHOLE = Kind("a whole number", (int,))
NUMBER = Kind("a number", (int, float))
FLAG = Kind("true or false", (bool,))
DURATION = Kind("a duration such as \"15m\" or \"1h\"", (str,))
TEXTS = Kind("a list of strings", (list,), item=str)
#: a table whose keys are judged by its own loader (policies by name, sinks as an array, …)
OWN_LOADER = Kind("a table", (dict, list))

#: table name → {key: Kind}; top-level keys are under "". Keep in step with the readers in console/config.py,
#: console/cli_serve.py and console/api_integrations.py (tests/unit/test_config_schema.py checks the docs).
SCHEMA: dict[str, dict[str, Kind]] = {
    "": {"database_url": TEXT, "server": TEXT, "kill_switch_marker": TEXT},
    "scheduler": {"weekly_cycle": TEXT, "timezone": TEXT, "backup_dir": TEXT, "retention_days": WHOLE},
    "serve": {"max_body_mib": NUMBER, "read_rate": NUMBER, "read_burst": WHOLE, "allowed_hosts": TEXTS},
    "governance": {"proposal_ttl_days": NUMBER},
    "audit": {"key_file": TEXT, "anchor_file": TEXT, "anchor_alert": FLAG, "anchor_interval": DURATION},
    "ingest": {"max_clock_skew": DURATION, "late_horizon": DURATION},
    "agents": {"require_lease": FLAG, "default_ttl": WHOLE},
    "modes": {"minimal_allowed": TEXTS},
    "integrations": {"alertmanager": OWN_LOADER},
    "alerts": {"sinks": OWN_LOADER},
    "policies": {},  # [policies.NAME]: any name; engine/policies.py judges each table's keys
}
OPEN_TABLES = frozenset({"policies"})


class SchemaError(ValueError):
    """What is wrong and where: ``str()`` is the whole message."""


def _hint(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return (f" (did you mean {close[0]!r}?)" if close else "") + f"; the keys are {', '.join(known)}"


def check(raw: Mapping[str, Any], path: Path | str) -> None:
    """Refuse an unknown table or key, or a value of the wrong type, naming the file and the key."""
    top = SCHEMA[""]
    tables = [name for name in SCHEMA if name]
    for key, value in raw.items():
        if key in top:
            _check_value(path, key, top[key], value)
            continue
        if key not in SCHEMA:
            close = difflib.get_close_matches(key, tables + list(top), n=1, cutoff=0.6)
            hint = (f" (did you mean {close[0]!r}?)" if close
                    else f"; the tables are {', '.join(tables)} and the keys {', '.join(top)}")
            raise SchemaError(f"{path}: unknown key {key!r}{hint}")
        if not isinstance(value, dict):
            raise SchemaError(f"{path}: [{key}] must be a table, not {type(value).__name__}")
        if key in OPEN_TABLES:
            continue
        known = SCHEMA[key]
        for inner, inner_value in value.items():
            if inner not in known:
                raise SchemaError(f"{path}: [{key}] has unknown key {inner!r}{_hint(inner, list(known))}")
            _check_value(path, f"[{key}] {inner}", known[inner], inner_value)


def _check_value(path: Path | str, where: str, kind: Kind, value: Any) -> None:
    if not kind.accepts(value):
        raise SchemaError(f"{path}: {where} = {value!r}: expected {kind.name}")
