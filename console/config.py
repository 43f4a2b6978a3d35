"""Configuration: a TOML file (``$GOVCON_CONFIG`` or the user's config directory) and the environment.

The store's URL comes from ``$GOVCON_DATABASE_URL``, else ``database_url`` in the file, else a SQLite
file in the user's data directory.
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import platformdirs

from console.config_schema import SchemaError
from console.config_schema import check as check_schema
from engine.agents import MAX_TTL, MIN_TTL
from engine.alerts import load_sinks
from engine.audit_anchor import DEFAULT_INTERVAL, AnchorSettings
from engine.errors import InvalidInput
from engine.events import DEFAULT_TIMING, EventTiming
from engine.governance import Governance
from engine.kill_marker import KillMarker
from engine.policies import DEFAULT_POLICIES, load_policies
from engine.proposals import ProposalPolicy
from engine.rule_language import RuleError, parse_window
from engine.store_config import drift
from storage import audit, policies_repo
from storage.audit_key import AuditKeyError
from storage.audit_key import load as load_audit_key

APP = "govcon"


class ConfigError(Exception):
    pass


def config_path() -> Path:
    explicit = os.environ.get("GOVCON_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def default_database_path() -> Path:
    return Path(platformdirs.user_data_dir(APP)) / "governance.db"


@dataclass
class Config:
    database_url: str
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:  # one place refuses unknown tables and keys (console/config_schema.py)
            check_schema(self.raw, self.path or "the configuration")
        except SchemaError as exc:
            raise ConfigError(str(exc)) from None

    def scheduler_options(self) -> dict[str, Any]:
        """[scheduler] weekly_cycle = "fri 16:00", timezone = "UTC", backup_dir, retention_days."""
        sec = self.section("scheduler")
        opts: dict[str, Any] = {}
        if "weekly_cycle" in sec:
            opts["weekly_cycle"] = str(sec["weekly_cycle"])
        if "timezone" in sec:
            opts["timezone_name"] = str(sec["timezone"])
        if "backup_dir" in sec:
            opts["backup_dir"] = str(sec["backup_dir"])
        if "retention_days" in sec:
            opts["retention_days"] = int(sec["retention_days"])
        anchor = self.audit_anchor()
        if anchor is not None:
            opts["audit_anchor"] = anchor
        return opts

    def audit_key_path(self) -> Path:
        """``$GOVCON_AUDIT_KEY_FILE``, else ``[audit] key_file``, else ``audit.key`` in the service's state
        directory (``$STATE_DIRECTORY``, which systemd's StateDirectory= sets) or beside the config file."""
        value = os.environ.get("GOVCON_AUDIT_KEY_FILE") or self.section("audit").get("key_file")
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{self.path}: [audit] key_file must be a file path (a non-empty string)")
            return Path(value).expanduser()
        state_dir = os.environ.get("STATE_DIRECTORY")
        if state_dir:
            return Path(state_dir.split(":")[0]) / "audit.key"
        config = config_path()
        if config.exists() and not config.is_file():  # GOVCON_CONFIG=/dev/null
            config = Path(platformdirs.user_config_dir(APP)) / "config.toml"
        return config.parent / "audit.key"

    def audit_key(self):
        """The audit key (storage/audit.py AuditKey) from its file, or None when there is no file;
        AuditKeyError (naming the path) when the file cannot be used."""
        return load_audit_key(self.audit_key_path())

    def audit_anchor(self):
        """[audit] anchor_file = PATH, anchor_alert = true, anchor_interval = "1h": the scheduler's
        audit-anchor job (engine/audit_anchor.py); None when neither a file nor the alert is asked for."""
        sec = self.section("audit")
        path = sec.get("anchor_file")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise ConfigError(f"{self.path}: [audit] anchor_file must be a file path (a non-empty string)")
        alert = sec.get("anchor_alert", False)
        if not isinstance(alert, bool):
            raise ConfigError(f"{self.path}: [audit] anchor_alert = {alert!r}: use true or false")
        interval = DEFAULT_INTERVAL
        if "anchor_interval" in sec:
            try:
                interval = parse_window(sec["anchor_interval"])
            except RuleError as exc:
                raise ConfigError(f"{self.path}: [audit] anchor_interval = {sec['anchor_interval']!r}: "
                                  f"{exc.message}; use a duration such as \"15m\" or \"1h\"") from None
        if path is None and not alert:
            return None
        return AnchorSettings(file=Path(path).expanduser() if path else None, alert=alert, interval=interval)

    def event_timing(self):
        """[ingest] max_clock_skew = "5m" (an event stamped further ahead is refused) and late_horizon =
        "1h" (an event at most this late is judged by the breakers on arrival): durations as rule
        windows spell them (30s, 5m, 1h, 1d). Without the table, engine.events.DEFAULT_TIMING."""
        sec = self.section("ingest")
        if not sec:
            return DEFAULT_TIMING
        known = ("max_clock_skew", "late_horizon")
        values = {}
        for key in known:
            if key in sec:
                try:
                    values[key] = parse_window(sec[key])
                except RuleError as exc:
                    raise ConfigError(f"{self.path}: [ingest] {key} = {sec[key]!r}: {exc.message}; use a "
                                      "duration such as \"5m\" or \"1h\"") from None
        return EventTiming(**{"max_clock_skew": DEFAULT_TIMING.max_clock_skew,
                              "late_horizon": DEFAULT_TIMING.late_horizon, **values})

    def agent_options(self) -> dict[str, Any]:
        """[agents] require_lease = false (true: every ask naming an agent needs a live lease, not only an
        agent that has beaten before) and default_ttl = 60 (seconds, for a heartbeat that names none)."""
        sec = self.section("agents")
        opts: dict[str, Any] = {}
        if "require_lease" in sec:  # its type is checked with the file (console/config_schema.py)
            opts["require_lease"] = sec["require_lease"]
        if "default_ttl" in sec:
            ttl = sec["default_ttl"]
            if isinstance(ttl, bool) or not isinstance(ttl, int) or not MIN_TTL <= ttl <= MAX_TTL:
                raise ConfigError(f"{self.path}: [agents] default_ttl = {ttl!r}: use whole seconds from "
                                  f"{MIN_TTL} to {MAX_TTL}")
            opts["default_ttl"] = ttl
        return opts

    def minimal_allowed(self) -> frozenset[str] | None:
        """[modes] minimal_allowed = ["read", "log_rotation", "clear_cache"]: the action classes that still act
        autonomously in `minimal` mode (None: the gate's default)."""
        classes = self.section("modes").get("minimal_allowed")
        if classes is None:
            return None
        bad = [c for c in classes if not c.strip()]
        if bad:
            raise ConfigError(f"{self.path}: [modes] minimal_allowed has an empty action class")
        return frozenset(c.strip() for c in classes)

    def kill_switch_marker(self) -> Path | None:
        """``kill_switch_marker`` (top level; or ``$GOVCON_KILL_SWITCH_MARKER``): the path of the kill
        switch's marker file (engine/kill_marker.py). None: the default (beside a SQLite store; the
        service's runtime directory for PostgreSQL)."""
        value = os.environ.get("GOVCON_KILL_SWITCH_MARKER") or self.raw.get("kill_switch_marker")
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{self.path}: kill_switch_marker must be a file path (a non-empty string)")
        return Path(value).expanduser()

    def server(self) -> str | None:
        """``$GOVCON_SERVER``, else ``server`` (top level): the govcon service this process is a client of
        (``unix:///run/govcon/govcon.sock`` or ``https://host:4007`` with ``$GOVCON_TOKEN``); None: the
        store is opened here (embedded mode)."""
        value = os.environ.get("GOVCON_SERVER") or self.raw.get("server")
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not value.startswith(("unix://", "https://", "http://")):
            raise ConfigError(f"{'GOVCON_SERVER' if os.environ.get('GOVCON_SERVER') else f'{self.path}: server'} "
                              f"= {value!r}: use unix:///run/govcon/govcon.sock or https://HOST:4007")
        return value

    def file_policies(self):
        """The file's [policies] (engine.policies.Policy list), or None when it has no [policies] table.
        They seed a new store (`db init`) and are imported by `db import-config`; at runtime the store's
        decide. InvalidInput names the policy and key."""
        if "policies" not in self.raw:
            return None
        return load_policies(self.section("policies"))

    def seed_policies(self):
        """(policies, where they come from) for `db init`: the file's [policies], else seed 002's defaults."""
        found = self.file_policies()
        if found is None:
            return load_policies(DEFAULT_POLICIES), "seed 002's default policies (the config file has no [policies])"
        return found, f"the config file {self.path}"

    def file_sinks(self):
        """The file's [[alerts.sinks]] (engine.alerts.SinkConfig list), or None when it names none."""
        section = self.section("alerts")
        if "sinks" not in section:
            return None
        return load_sinks(section)

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.path}: [{name}] must be a table")
        return value


def load_config(path: Path | None = None) -> Config:
    path = path or config_path()
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    url = os.environ.get("GOVCON_DATABASE_URL") or raw.get("database_url") or str(default_database_path())
    return Config(database_url=url, path=path if path.exists() else None, raw=raw)


def build_governance(store, config: Config, clock=None, *, warn_drift: bool = True):
    """The Governance facade configured from the config file: proposals, ingest timing, agents, the audit key.
    Gate policies and alert sinks are the store's (engine/store_config.py): the file's [policies] and
    [alerts] sinks are used only while the store has none of its own (a store from before they moved there,
    until `govcon db import-config`). ``warn_drift``: say on stderr (logger govcon.config) when they differ
    from the store's, naming the file."""
    gov_cfg = config.section("governance")
    try:
        ttl = timedelta(days=float(gov_cfg.get("proposal_ttl_days", 7)))
    except (TypeError, ValueError):
        raise ConfigError(f"{config.path}: [governance].proposal_ttl_days must be a number of days") from None
    _use_audit_key(store, config)
    file_policies, file_sinks = _file_policies_and_sinks(store, config)
    if warn_drift:
        warn_config_drift(store, config, file_policies, file_sinks)
    legacy = file_policies if file_policies is not None else load_policies(DEFAULT_POLICIES)
    return Governance(store, clock, config_policies=legacy, config_sinks=file_sinks or [],
                      proposal_policy=ProposalPolicy(ttl=ttl), event_timing=config.event_timing(),
                      kill_marker=_kill_marker(config), agent_options=config.agent_options(),
                      minimal_allowed=config.minimal_allowed())


def _file_policies_and_sinks(store, config: Config):
    """The file's policies and sinks (None where it has no such section). A section that does not validate is
    an error while the store has none of its own (they would decide, as before), and only a warning once the
    store's decide: a stale file must not stop a kill switch."""
    log = logging.getLogger("govcon.config")
    out = []
    for read in (config.file_policies, config.file_sinks):
        try:
            out.append(read())
        except (InvalidInput, ConfigError) as exc:
            if _store_is_legacy(store):
                raise
            log.warning("%s: %s (ignored: the store's policies and sinks decide)", config.path, exc)
            out.append(None)
    return tuple(out)


def _store_is_legacy(store) -> bool:
    """True when the store has no policies and sinks of its own yet (or cannot be read: then the file's
    error is the one to show)."""
    try:
        with store.read() as conn:
            return not policies_repo.version(conn)
    except Exception:
        return True


def warn_config_drift(store, config: Config, file_policies=None, file_sinks=None) -> list[str]:
    """Warn (logger govcon.config) when the file's [policies] / [alerts] sinks differ from the store's, which
    decide; never fails the caller. Returns the warnings."""
    log = logging.getLogger("govcon.config")
    try:
        found = drift(store, policies=file_policies, sinks=file_sinks, source=config.path)
    except Exception as exc:  # a store that cannot be read now: the command itself will say so
        log.debug("could not compare the config file with the store: %s", exc)
        return []
    for line in found:
        log.warning("%s", line)
    return found


def _use_audit_key(store, config: Config) -> None:
    """Append with the configured audit key. A key file that cannot be used is logged, not fatal here (the
    kill switch must work whatever the key file's mode); `audit verify` and `audit head` refuse it."""
    try:
        key = config.audit_key()
    except AuditKeyError as exc:
        logging.getLogger("govcon.audit").warning("%s: appending unkeyed audit entries", exc)
        key = None
    audit.use_key(store.engine.url, key)


def _kill_marker(config: Config):
    path = config.kill_switch_marker()
    return KillMarker(path) if path is not None else None
