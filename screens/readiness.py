"""Readiness (key 3): every checklist item with its evidence, failing required items (blockers) first;
`t` attests the selected item from here. Why not ready (engine/readiness_explain.py): the summary says
what stands between the checklist and expansion ("checklist ready — N open events block expansion", never a
bare READY), each failing item's detail what would earn it and when and the score if it passed, and the
"if ✓" column that score."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.widgets import DataTable, Static

from screens.base import GovScreen
from screens.dashboard import CATEGORIES
from screens.data import SlowData
from screens.explain_text import headline_text, missing_text
from screens.fmt import matches, pct
from screens.modals import Ask, ConfirmModal
from screens.repaint import update_in_place
from screens.widgets import DetailPane, Pane, Table


def ordered_items(doc: dict[str, Any]) -> list[dict[str, Any]]:
    items = [dict(i, category=c) for c in CATEGORIES for i in doc[c]["items"]]
    return sorted(items, key=lambda i: (i["status"], not i["required"], CATEGORIES.index(i["category"]),
                                        -i["weight"]))


EXPLAIN_EVERY = 30.0  # seconds: the facts behind the explanation are re-read this often, or when the report changes


def load_explained(gov) -> tuple[dict[str, Any], dict[str, Any]]:
    return gov.explainer.explain()


def explain_for(gov, doc: dict[str, Any]) -> dict[str, Any]:
    return gov.explainer.explain_doc(doc)


def summary_text(doc: dict[str, Any], ex: dict[str, Any] | None) -> Text:
    o = doc["overall"]
    t = Text()
    t.append(f"{pct(o['score'])} ", "bold")
    t.append(f"({o['points']}/{o['possible']} points) · " + " · ".join(f"{c} {pct(doc[c]['score'], 0)}"
                                                                        for c in CATEGORIES) + "\n")
    if ex is None:
        t.append("checklist ready — explaining…" if o["ready"] else "not ready — explaining…", "dim")
        return t
    t.append_text(headline_text(ex))
    if ex["missing"]:
        t.append(f" · all {len(ex['missing'])} missing: {ex['ifAllPassed']['score']:.0%}", "dim")
    return t


def item_detail(item: dict[str, Any] | None, ex: dict[str, Any] | None = None) -> Text:
    if item is None:
        return Text("no item selected", "dim")
    t = Text()
    t.append(item["name"] + "\n", "bold")
    t.append("passing" if item["status"] else "FAILING", "green" if item["status"] else "bold red")
    t.append(f" · {item['category']} · {item['weight']} points · "
             f"{'required' if item['required'] else 'optional'} · decided by {item['decidedBy']}\n\n")
    t.append(item["details"] + "\n")
    missing = next((m for m in ex["missing"] if m["slug"] == item["slug"]), None) if ex else None
    if missing is not None:
        t.append("\nWhy not, and what earns it\n", "bold")
        t.append_text(missing_text(missing))
    lapse = next((x for x in ex["lapsing"] if x["name"] == item["name"]), None) if ex else None
    if lapse is not None:
        t.append(f"\nlapses {lapse['on'][:10]} (score then {lapse['scoreIfLapsed']:.1%}); renew: {lapse['command']}\n",
                 "yellow")
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
        self.explained: dict[str, Any] | None = None
        self._explained_for: tuple | None = None
        self._explained_at = 0.0

    def compose_body(self) -> ComposeResult:
        with Container(id="split"):
            yield Pane(Static("assessing…", id="readiness-summary"),
                       Table(("", "item", "pts", "req", "if ✓", "category"), id="items"),
                       title="Readiness checklist  (t attest · / filter)", id="pane-items", classes="list")
            yield DetailPane(Static("", id="item-detail"), title="Evidence", id="pane-item", classes="detail")

    def on_mount(self) -> None:
        self.query_one("#items", Table).focus()

    def reload(self) -> None:
        if self.doc is None:
            self.load("readiness", lambda: load_explained(self.app.gov))

    def on_slow(self, slow: SlowData) -> None:
        if slow.readiness is not None:
            self.doc = slow.readiness
            self._redraw()
            self._explain_if_due()

    def _report_key(self) -> tuple | None:
        if self.doc is None:
            return None
        return tuple((i["slug"], i["status"]) for c in CATEGORIES for i in self.doc[c]["items"])

    def _explain_if_due(self) -> None:
        doc = self.doc
        if doc is None:
            return
        if self._report_key() != self._explained_for or time.monotonic() - self._explained_at > EXPLAIN_EVERY:
            self.load("explain", lambda: explain_for(self.app.gov, doc))

    def loaded(self, key: str, value: Any) -> None:
        if key == "readiness":
            self.doc, self.explained = value
        elif key == "explain":
            self.explained = value
        self._explained_for, self._explained_at = self._report_key(), time.monotonic()
        self._redraw()

    def _redraw(self) -> None:
        if self.doc is None:
            return
        self._show("#readiness-summary", summary_text(self.doc, self.explained))
        then = {m["slug"]: f"{m['scoreIfPassed']:.0%}" for m in self.explained["missing"]} if self.explained else {}
        items = [i for i in ordered_items(self.doc)
                 if not self.filter_text or matches(self.filter_text, i["name"], i["category"], i["details"],
                                                    "passing" if i["status"] else "failing")]
        self.query_one("#items", Table).set_rows(
            (i["slug"], (Text("✓", "green") if i["status"] else Text("✗", "bold red"), i["name"], str(i["weight"]),
                         "yes" if i["required"] else "", then.get(i["slug"], ""), i["category"]))
            for i in items)
        self._show_detail()

    def selected_item(self) -> dict[str, Any] | None:
        key = self.query_one("#items", Table).selected_key
        return next((i for i in ordered_items(self.doc) if i["slug"] == key), None) if self.doc else None

    @on(DataTable.RowHighlighted, "#items")
    def _show_detail(self) -> None:
        self._show("#item-detail", item_detail(self.selected_item(), self.explained))

    def _show(self, selector: str, text: Text) -> None:
        """Each slow refresh redraws this screen, mostly unchanged: an unchanged text is not set again, a
        changed one of the same height is repainted without a layout (repaint.update_in_place)."""
        update_in_place(self.query_one(selector, Static), text)

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
