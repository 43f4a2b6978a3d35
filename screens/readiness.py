"""Readiness (key 3): every checklist item with its evidence, failing required items (blockers) first;
`t` attests the selected item from here."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.widgets import DataTable, Static

from screens.base import GovScreen
from screens.dashboard import CATEGORIES, readiness_text
from screens.data import SlowData
from screens.fmt import matches
from screens.modals import Ask, ConfirmModal
from screens.widgets import DetailPane, Pane, Table


def ordered_items(doc: dict[str, Any]) -> list[dict[str, Any]]:
    items = [dict(i, category=c) for c in CATEGORIES for i in doc[c]["items"]]
    return sorted(items, key=lambda i: (i["status"], not i["required"], CATEGORIES.index(i["category"]),
                                        -i["weight"]))


def item_detail(item: dict[str, Any] | None) -> Text:
    if item is None:
        return Text("no item selected", "dim")
    t = Text()
    t.append(item["name"] + "\n", "bold")
    t.append("passing" if item["status"] else "FAILING", "green" if item["status"] else "bold red")
    t.append(f" · {item['category']} · {item['weight']} points · "
             f"{'required' if item['required'] else 'optional'} · decided by {item['decidedBy']}\n\n")
    t.append(item["details"] + "\n")
    if item["decidedBy"] == "attestation":
        t.append("\nt attests it (pass or fail, with evidence)", "dim")
    return t


class ReadinessScreen(GovScreen):
    SCREEN_NAME = "readiness"
    SCREEN_TITLE = "3 Readiness"
    FILTER_WHAT = "checklist items"
    BINDINGS = [Binding("t", "attest", "Attest", id="readiness.attest",
                        tooltip="Attest the selected checklist item: pass or fail, with evidence")]

    def __init__(self) -> None:
        super().__init__()
        self.doc: dict[str, Any] | None = None

    def compose_body(self) -> ComposeResult:
        with Container(id="split"):
            yield Pane(Static("assessing…", id="readiness-summary"),
                       Table(("", "item", "category", "pts", "req"), id="items"),
                       title="Readiness checklist  (t attest · / filter)", id="pane-items", classes="list")
            yield DetailPane(Static("", id="item-detail"), title="Evidence", id="pane-item", classes="detail")

    def on_mount(self) -> None:
        self.query_one("#items", Table).focus()

    def reload(self) -> None:
        self.load("readiness", lambda: self.app.gov.readiness.assess().to_json())

    def on_slow(self, slow: SlowData) -> None:
        if slow.readiness is not None:
            self.loaded("readiness", slow.readiness)

    def loaded(self, key: str, value: Any) -> None:
        self.doc = value
        self._redraw()

    def _redraw(self) -> None:
        if self.doc is None:
            return
        self.query_one("#readiness-summary", Static).update(readiness_text(self.doc, brief=True))
        items = [i for i in ordered_items(self.doc)
                 if not self.filter_text or matches(self.filter_text, i["name"], i["category"], i["details"],
                                                    "passing" if i["status"] else "failing")]
        self.query_one("#items", Table).set_rows(
            (i["slug"], (Text("✓", "green") if i["status"] else Text("✗", "bold red"), i["name"], i["category"],
                         str(i["weight"]), "yes" if i["required"] else ""))
            for i in items)
        self._show_detail()

    def selected_item(self) -> dict[str, Any] | None:
        key = self.query_one("#items", Table).selected_key
        return next((i for i in ordered_items(self.doc) if i["slug"] == key), None) if self.doc else None

    @on(DataTable.RowHighlighted, "#items")
    def _show_detail(self) -> None:
        self.query_one("#item-detail", Static).update(item_detail(self.selected_item()))

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        self._redraw()

    def action_attest(self) -> None:
        item = self.selected_item()
        if item is None:
            self.notify("select a checklist item first", severity="warning")
            return
        if item["decidedBy"] != "attestation":
            self.notify(f"{item['name']!r} is decided from the store's data and cannot be attested",
                        severity="warning", title="Not attestable")
            return
        modal = ConfirmModal(
            f"Attest: {item['name']}",
            "Records your statement, with evidence, in the audit log. It counts towards readiness until it "
            "expires (90 days).",
            confirm="Attest", danger=False,
            ask=Ask(choices=("pass", "fail"), choice_label="Verdict:", reason_label="Evidence (a link, a document):"))

        def done(result: dict[str, Any] | None) -> None:
            if result is None:
                return
            passed = result["choice"] == "pass"
            self.app.perform(
                lambda: self.app.gov.attest(self.app.operator, item["name"], passed=passed,
                                            evidence=result["reason"]),
                lambda doc: f"attested {doc['item']!r} as {'passing' if doc['passed'] else 'failing'} "
                            f"(valid until {doc['expiresAt'][:10]})")

        self.app.push_screen(modal, done)
