"""Gate policies and alert sinks as the store keeps them (issue 13 pt 2): listed, shown, set and deleted by
admin and ops-lead, each change one transaction with one audit entry recording before and after; seeded
once from the config file at `govcon db init`, imported from it with `govcon db import-config`.

A policy's audit entry records its spec (the config file's spelling, engine/policies.py ``policy_spec``);
a sink's records what may be shown of it (engine/alerts.py ``sink_view``: the URL masked, the routing key
"set", a fingerprint of both), never the secret itself. `govcon audit verify` replays these entries
(engine/audit_verify.py) and names a policy or sink edited without one.

``policies_version`` / ``sinks_version`` in the governance state: 0 means the store has none of its own
yet (it predates revision 0019 and has not imported a config file): the processes then still use their
config files, and `set`/`delete` are refused until `db import-config` has run, so that a first edit never
drops the policies the config files held. `db init` and `db import-config` set them to at least 1.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from engine import access
from engine.alerts import SinkConfig, load_sinks, secret_fingerprint, sink_entry, sink_view, split_secret, stored_sink
from engine.clock import Clock, isoformat
from engine.errors import InvalidInput, NotFound
from engine.policies import Policy, load_policies, load_stored, policy_spec
from storage import audit, policies_repo, sinks_repo
from storage.store import Store
from storage.tables import governance_state as STATE

NAME_MAX = {"policy": 200, "sink": 100}
LEGACY = ("this store's {what} still come from each process's config file (the store predates them moving "
          "into it): run `govcon db import-config` once on the config file that holds them, then edit them here")


def check_name(name: Any, what: str) -> str:
    limit = NAME_MAX[what]
    if not isinstance(name, str) or not name.strip() or name != name.strip() or len(name) > limit \
            or any(not c.isprintable() for c in name):
        raise InvalidInput(f"{what} name {name!r}: a non-empty name of at most {limit} printable characters, "
                           "without leading or trailing spaces")
    return name


def relabel(message: str, name: str, labels: dict[str, str]) -> str:
    """An engine message about ``[policies.NAME].key`` in the words of the caller (a CLI flag, a JSON field)."""
    where = f"[policies.{name}]"

    def one(m: re.Match) -> str:
        return labels.get(m.group(1), m.group(1))
    message = re.sub(re.escape(where) + r"\.([a-z_]+)", lambda m: f"policy {name!r}: {one(m)}", message)
    message = message.replace(where + ":", f"policy {name!r}:")
    for key, label in labels.items():
        message = re.sub(rf"\b{key}\b", label, message)
    return message


def _row_times(row: Row) -> dict[str, Any]:
    return {"createdAt": isoformat(row.created_at), "createdBy": row.created_by,
            "updatedAt": isoformat(row.updated_at), "updatedBy": row.updated_by}


def _require_own(conn: Connection, what: str, version: int | None) -> None:
    if not version:
        raise InvalidInput(LEGACY.format(what=what))


# --- policies ----------------------------------------------------------------------------------------


def policy_json(row: Row) -> dict[str, Any]:
    try:
        doc = load_stored([row])[0].to_json()
    except InvalidInput as exc:  # edited behind govcon's back: shown as such (the gate fails closed on it)
        spec = row.spec if isinstance(row.spec, dict) else {}
        types = spec.get("command_types")
        doc = {"name": row.name, "commandTypes": types if isinstance(types, list) else [],
               "notificationLevel": "?", "invalid": str(exc)}
    return {**doc, "spec": dict(row.spec or {}) if isinstance(row.spec, dict) else row.spec, **_row_times(row)}


class PolicyBook:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def list(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return [policy_json(r) for r in policies_repo.all_policies(conn)]

    def show(self, name: str) -> dict[str, Any]:
        with self.store.read() as conn:
            row = policies_repo.get(conn, name)
            if row is None:
                raise NotFound(f"no policy {name!r}; see `govcon policies list`")
            return policy_json(row)

    def set(self, actor: str, name: str, changes: dict[str, Any], *, replace: bool = False,
            reason: str = "") -> dict[str, Any]:
        """Create or change a policy. ``changes`` in the config file's spelling; a None value clears the
        setting (back to its default). An existing policy keeps what ``changes`` does not name, unless
        ``replace``. A new one must name its command types."""
        check_name(name, "policy")
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "rules.edit")
            _require_own(conn, "policies", policies_repo.version(conn))
            row = policies_repo.get(conn, name)
            before = dict(row.spec) if row is not None else None
            if (row is None or replace) and not changes.get("command_types"):
                raise InvalidInput(f"policy {name!r}: command_types is required for a new policy (the command "
                                   "types it covers)")
            merged = {**({} if replace or before is None else before), **changes}
            spec = policy_spec(load_policies({name: {k: v for k, v in merged.items() if v is not None}})[0])
            if row is not None and spec == before:
                return {"changed": False, "created": False, "policy": policy_json(row)}
            created = policies_repo.upsert(conn, name=name, spec=spec, at=now, actor=actor)
            audit.append(conn, at=now, actor=actor, action="policy.set", target=name, reason=reason,
                         details={"before": before, "after": spec})
            stored = policies_repo.get(conn, name)
            assert stored is not None  # written just above, in this transaction
            return {"changed": True, "created": created, "policy": policy_json(stored)}

    def delete(self, actor: str, name: str, *, reason: str = "") -> dict[str, Any]:
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "rules.edit")
            _require_own(conn, "policies", policies_repo.version(conn))
            row = policies_repo.get(conn, name)
            if row is None:
                raise NotFound(f"no policy {name!r}; see `govcon policies list`")
            policies_repo.delete(conn, name)
            audit.append(conn, at=now, actor=actor, action="policy.delete", target=name, reason=reason,
                         details={"before": dict(row.spec)})
            return {"deleted": name, "before": dict(row.spec)}


# --- sinks -------------------------------------------------------------------------------------------


def sink_json(row: Row) -> dict[str, Any]:
    try:
        view = sink_view(stored_sink(row.name, row.kind, row.settings, row.secret))
    except InvalidInput as exc:  # edited behind govcon's back: shown, never used (engine/notifier.py)
        view = {"name": row.name, "kind": row.kind, "invalid": str(exc),
                "secretFingerprint": secret_fingerprint(row.secret or {})}
    return {**view, **_row_times(row)}


class SinkBook:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def list(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return [sink_json(r) for r in sinks_repo.all_sinks(conn)]

    def show(self, name: str) -> dict[str, Any]:
        with self.store.read() as conn:
            row = sinks_repo.get(conn, name)
            if row is None:
                raise NotFound(f"no alert sink {name!r}; see `govcon alerts sinks list`")
            return sink_json(row)

    def set(self, actor: str, name: str, changes: dict[str, Any], *, reason: str = "") -> dict[str, Any]:
        """Create or change a sink. ``changes`` in the config file's spelling (``type``, ``url``,
        ``routing_key``, ``severities``, ``timeout``, ``reports``, ``from``, ``to``, ``username``,
        ``password_env``, ``ca_file``); None clears a setting. An existing sink keeps what is not named,
        its secret included, unless ``type`` changes (then it is built from ``changes`` alone)."""
        check_name(name, "sink")
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "sinks.edit")
            _require_own(conn, "alert sinks", sinks_repo.version(conn))
            row = sinks_repo.get(conn, name)
            base: dict[str, Any] = {}
            before = None
            if row is not None:
                before = _view_of(row)
                if changes.get("type") in (None, row.kind):
                    base = {**(row.settings or {}), **(row.secret or {}), "type": row.kind}
            elif not changes.get("type"):
                raise InvalidInput(f"alert sink {name!r} is new: kind is required (webhook, slack, pagerduty, smtp)")
            merged = {**base, **changes, "name": name}
            sink = load_sinks({"sinks": [{k: v for k, v in merged.items() if v is not None}]})[0]
            settings, secret = split_secret(sink)
            stored_sink(name, sink.type, settings, secret)  # what delivery reads back: refused now, not skipped then
            if row is not None and (row.kind, row.settings, row.secret) == (sink.type, settings, secret):
                return {"changed": False, "created": False, "sink": sink_json(row)}
            created = sinks_repo.upsert(conn, name=name, kind=sink.type, settings=settings, secret=secret,
                                        at=now, actor=actor)
            after = sink_view(sink)
            audit.append(conn, at=now, actor=actor, action="sink.set", target=name, reason=reason,
                         details={"before": before, "after": after})
            stored = sinks_repo.get(conn, name)
            assert stored is not None  # written just above, in this transaction
            return {"changed": True, "created": created, "sink": sink_json(stored)}

    def delete(self, actor: str, name: str, *, reason: str = "") -> dict[str, Any]:
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "sinks.edit")
            _require_own(conn, "alert sinks", sinks_repo.version(conn))
            row = sinks_repo.get(conn, name)
            if row is None:
                raise NotFound(f"no alert sink {name!r}; see `govcon alerts sinks list`")
            before = _view_of(row)
            sinks_repo.delete(conn, name)
            audit.append(conn, at=now, actor=actor, action="sink.delete", target=name, reason=reason,
                         details={"before": before})
            return {"deleted": name, "before": before}


# --- seeding and importing from the config file ------------------------------------------------------


def _claim(conn: Connection) -> None:
    """The store keeps its own policies and sinks from now on (versions at least 1)."""
    conn.execute(sa.update(STATE).where(STATE.c.id == 1).values(
        policies_version=sa.case((STATE.c.policies_version < 1, 1), else_=STATE.c.policies_version),
        sinks_version=sa.case((STATE.c.sinks_version < 1, 1), else_=STATE.c.sinks_version)))


def write_config(conn: Connection, *, actor: str, now: datetime, policies: list[Policy] | None,
                 sinks: list[SinkConfig] | None, source: str, replace: bool = False, policies_from: str | None = None,
                 verb: str = "imported", audited: bool = True) -> dict[str, Any]:
    """Put the config file's policies and sinks into the store inside the caller's write transaction (the
    actor's role checked by the caller): one audit entry per policy or sink that changes, reason naming the
    file. ``None``: the file has no such section (nothing imported). ``replace``: the store's policies and
    sinks the file does not name are deleted (audited too). ``audited=False`` (a new store: its store.init
    entry records them) writes no entry and returns what was written under ``policySpecs``/``sinkViews``."""
    report: dict[str, Any] = {"source": source, "policies": {"created": [], "updated": [], "unchanged": [],
                                                             "deleted": []},
                              "sinks": {"created": [], "updated": [], "unchanged": [], "deleted": []}}
    if not audited:
        report["policySpecs"], report["sinkViews"] = {}, {}
        for policy in policies or []:
            report["policySpecs"][policy.name] = spec = policy_spec(policy)
            policies_repo.upsert(conn, name=policy.name, spec=spec, at=now, actor=actor)
        for sink in sinks or []:
            settings, secret = split_secret(sink)
            sinks_repo.upsert(conn, name=sink.name, kind=sink.type, settings=settings, secret=secret, at=now,
                              actor=actor)
            report["sinkViews"][sink.name] = sink_view(sink)
        _claim(conn)
        return report
    reason = f"{verb} from the config file {source}"
    policy_reason = f"{verb} from {policies_from}" if policies_from else reason
    if policies is not None:
        stored = {r.name: dict(r.spec) for r in policies_repo.all_policies(conn)}
        for policy in policies:
            spec = policy_spec(policy)
            before = stored.get(policy.name)
            if before == spec:
                report["policies"]["unchanged"].append(policy.name)
                continue
            policies_repo.upsert(conn, name=policy.name, spec=spec, at=now, actor=actor)
            audit.append(conn, at=now, actor=actor, action="policy.set", target=policy.name, reason=policy_reason,
                         details={"before": before, "after": spec})
            report["policies"]["created" if before is None else "updated"].append(policy.name)
        if replace:
            for name in sorted(set(stored) - {p.name for p in policies}):
                policies_repo.delete(conn, name)
                audit.append(conn, at=now, actor=actor, action="policy.delete", target=name, reason=reason,
                             details={"before": stored[name]})
                report["policies"]["deleted"].append(name)
    if sinks is not None:
        rows = {r.name: r for r in sinks_repo.all_sinks(conn)}
        for sink in sinks:
            settings, secret = split_secret(sink)
            row = rows.get(sink.name)
            if row is not None and (row.kind, row.settings, row.secret) == (sink.type, settings, secret):
                report["sinks"]["unchanged"].append(sink.name)
                continue
            before = None if row is None else _view_of(row)
            sinks_repo.upsert(conn, name=sink.name, kind=sink.type, settings=settings, secret=secret, at=now,
                              actor=actor)
            audit.append(conn, at=now, actor=actor, action="sink.set", target=sink.name, reason=reason,
                         details={"before": before, "after": sink_view(sink)})
            report["sinks"]["created" if row is None else "updated"].append(sink.name)
        if replace:
            for name in sorted(set(rows) - {s.name for s in sinks}):
                before = _view_of(rows[name])
                sinks_repo.delete(conn, name)
                audit.append(conn, at=now, actor=actor, action="sink.delete", target=name, reason=reason,
                             details={"before": before})
                report["sinks"]["deleted"].append(name)
    _claim(conn)
    return report


def _view_of(row: Row) -> dict[str, Any]:
    return {k: v for k, v in sink_json(row).items() if k not in ("createdAt", "createdBy", "updatedAt", "updatedBy")}


def import_config(store: Store, clock: Clock, actor: str, *, policies: list[Policy] | None,
                  sinks: list[SinkConfig] | None, source: str, replace: bool = False) -> dict[str, Any]:
    """`govcon db import-config`: one transaction (admin or ops-lead for each half it imports)."""
    now = clock.now()
    with store.write() as conn:
        if policies is not None:
            access.require_role(conn, actor, "rules.edit")
        access.require_role(conn, actor, "sinks.edit")
        return write_config(conn, actor=actor, now=now, policies=policies, sinks=sinks, source=source,
                            replace=replace)


def drift(store: Store, *, policies: list[Policy] | None, sinks: list[SinkConfig] | None,
          source: Path | str | None) -> list[str]:
    """What an operator must be told on start about the config file's [policies] and [alerts] sinks: that the
    store decides and they differ from it, or that the store has none of its own yet. [] when there is
    nothing to say (no such sections, or they agree, or the store has no governance state)."""
    if policies is None and sinks is None:
        return []
    shown = str(source) if source else "the config file"
    out: list[str] = []
    with store.read() as conn:
        pv, sv = policies_repo.version(conn), sinks_repo.version(conn)
        if pv is None:
            return []
        if not pv or not sv:
            return [f"{shown}: this store has no policies and alert sinks of its own yet, so this process uses "
                    f"the file's; other processes may use other files. Run `govcon db import-config` once to move "
                    "them into the store (every process then answers the same)"]
        if policies is not None:
            stored = {r.name: dict(r.spec) for r in policies_repo.all_policies(conn)}
            found = _differences(stored, {p.name: policy_spec(p) for p in policies})
            if found:
                out.append(f"{shown}: [policies] differs from the store's policies ({found}) and no longer decides "
                           "anything: the store's do, for every process. See `govcon policies list`; "
                           "`govcon db import-config` takes the file's")
        if sinks is not None:
            stored_s = {r.name: (r.kind, r.settings, r.secret) for r in sinks_repo.all_sinks(conn)}
            found = _differences(stored_s, {s.name: (s.type, *split_secret(s)) for s in sinks})
            if found:
                out.append(f"{shown}: [alerts] sinks differ from the store's ({found}) and no longer route anything: "
                           "the store's do, for every process. See `govcon alerts sinks list`; "
                           "`govcon db import-config` takes the file's")
    return out


def _differences(stored: dict[str, Any], mine: dict[str, Any]) -> str:
    parts = []
    for label, names in (("not the same: ", [n for n in mine if n in stored and stored[n] != mine[n]]),
                         ("only in the file: ", [n for n in mine if n not in stored]),
                         ("only in the store: ", [n for n in stored if n not in mine])):
        if names:
            parts.append(label + ", ".join(sorted(names)))
    return "; ".join(parts)


__all__ = ["PolicyBook", "SinkBook", "check_name", "drift", "import_config", "relabel", "sink_entry", "write_config"]
