"""Audit (key 7): the hash-chained audit log, newest first; `/` searches it in the store, `v` verifies
the whole chain and the state against it (as `govcon audit verify`)."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.widgets import DataTable, Static

from screens.base import GovScreen
from screens.fmt import safe, short_time
from screens.widgets import DetailPane, Pane, Table

LIMIT = 200


def entry_detail(e: dict[str, Any] | None) -> Text:
    if e is None:
        return Text("no entry selected", "dim")
    t = Text()
    t.append(f"#{e['seq']} {e['action']}", "bold")
    t.append(f" on {e['target']}\n" if e["target"] else "\n")
    t.append(f"by {e['actor']} at {e['at']}\n")
    if e["reason"]:
        t.append(f"why: {e['reason']}\n")
    if e["details"]:
        t.append(json.dumps(e["details"], indent=1, sort_keys=True, default=str) + "\n", "dim")
    t.append(f"hash {e['hash'][:16]}…", "dim")
    return t


def verdict(report: Any, keyed: bool, shown: int = 3) -> tuple[str, list[str]]:
    """The one-line verdict of `v` (what `govcon audit verify` checks: the chain, then the state, roles,
    tokens, rules, policies and sinks against the log) and the problems to show, at most ``shown``."""
    if report.ok:
        how = "keyed" if keyed else "UNKEYED"
        return (f"intact: {report.checked} entries ({how}); state, roles, tokens, rules, policies and sinks "
                "match the log"), []
    problems = list(report.problems[:shown])
    if len(report.problems) > shown:
        problems.append(f"… {len(report.problems) - shown} more: run `govcon audit verify`")
    first = report.problems[0]
    more = f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
    return f"NOT VERIFIED: {first}{more}", problems


class AuditScreen(GovScreen):
    SCREEN_NAME = "audit"
    SCREEN_TITLE = "7 Audit"
    FILTER_WHAT = "the audit log (actor, action, target, reason)"
    BINDINGS = [Binding("v", "verify", "Verify", id="audit.verify",
                        tooltip="Verify the hash chain and the state against it, as `govcon audit verify` does")]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []
        self.searched: str | None = None
        self.verdict: str = ""

    def compose_body(self) -> ComposeResult:
        with Container(id="split"):
            yield Pane(Table(("#", "when", "actor", "action", "target"), id="entries"),
                       Static("loading…", id="audit-note"), title="Audit log  (/ search · v verify)",
                       id="pane-audit", classes="list")
            yield DetailPane(Static("", id="entry-detail"), title="Entry", id="pane-entry", classes="detail")

    def on_mount(self) -> None:
        self.query_one("#entries", Table).focus()

    def reload(self) -> None:
        search = self.filter_text or None
        self.load("entries", lambda: (search, self.app.gov.audit_entries(limit=LIMIT, search=search)))

    def loaded(self, key: str, value: Any) -> None:
        if key == "verify":
            self.verdict, problems = verdict(*value)
            if problems:
                self.notify("\n".join(problems), title="Audit log NOT verified", severity="error", timeout=30)
                self.app.bell()
            else:
                self.notify(self.verdict, title="Audit log verified")
            self._note()
            return
        self.searched, self.entries = value  # what the shown entries match (the filter may have moved on)
        self.query_one("#entries", Table).set_rows(
            (str(e["seq"]), (str(e["seq"]), short_time(e["at"]), e["actor"], e["action"], e["target"]))
            for e in self.entries)
        self._note()
        self._show_detail()

    def load_failed(self, key: str, error: str) -> None:
        if key == "verify":
            self.notify(error, title="Could not verify the audit log", severity="error")

    def _note(self) -> None:
        shown = f"newest {len(self.entries)}" + (f" matching {self.searched!r}" if self.searched else "")
        self.query_one("#audit-note", Static).update(shown + (f" · {self.verdict}" if self.verdict else ""))

    @on(DataTable.RowHighlighted, "#entries")
    def _show_detail(self) -> None:
        key = self.query_one("#entries", Table).selected_key
        entry = next((e for e in self.entries if str(e["seq"]) == key), None)
        self.query_one("#entry-detail", Static).update(safe(entry_detail(entry)))

    def action_verify(self) -> None:
        self.load("verify", lambda: self.app.gov.audit_verify_report(None))
