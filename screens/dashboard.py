"""Dashboard (key 1): is autonomy safe right now? Breakers, open events, pending proposals, readiness,
trends. Two columns when wide, one scrolling column at 80x24 (the essentials first)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rich.table import Table as RichTable
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from engine.rule_status import RuleStatus
from screens.base import GovScreen
from screens.data import LiveData, SlowData
from screens.fmt import SEVERITY_STYLE, STATE_STYLE, bar, matches, pct, safe, short_time
from screens.plot import Plot, PlotSpec, Series, robust_top
from screens.repaint import update_in_place
from screens.widgets import Pane, Table

CATEGORIES = ("technical", "process", "organizational")
_NOTHING = object()
READY_FILE_ENV = "GOVCON_BENCH_READY_FILE"  # benchmarks: the file written once the dashboard is complete


def breaker_table(rules: tuple[RuleStatus, ...], half_open: dict[str, Any] | None = None) -> RichTable:
    """Two lines per rule: state, name and last trip; then what it reads now against when it trips (and,
    for a rule firing without an open event, why). First the command types probing their way back to
    autonomy after a pause (half-open: each allowed one probe at a time, closed after the probes left)."""
    table = RichTable(box=None, expand=True, show_header=False, padding=(0, 1, 0, 0))
    table.add_column("state", no_wrap=True, width=9)
    table.add_column("rule", ratio=1)
    for ctype, left in sorted((half_open or {}).items()):
        table.add_row(Text("HALF-OPEN", "bold yellow"),
                      safe(Text(f"{ctype}: probing back to autonomy, {left} successful probe(s) to close; "
                                "a failure pauses it again", "yellow")))
    for r in rules:
        desc = Text()
        desc.append(r.name, "bold")
        if r.shadow:
            desc.append(" [shadow]", "yellow")
        desc.append(f"  last trip {short_time(r.last_trip)}" + (" (shadow event open)" if r.shadow_open else ""),
                    "dim")
        desc.append(f"\nnow {r.observed or '–'}")
        desc.append(f" · trips when {r.condition} in {r.window}", "dim")
        if r.reason:  # FIRING without an open event: say why (resolved, held back, shadow, next tick)
            desc.append(f"\nno open event: {r.reason}", "yellow")
        table.add_row(Text(r.state, STATE_STYLE.get(r.state, "")), safe(desc))  # names/types come from outside
    return table


def readiness_text(doc: dict[str, Any] | None, *, brief: bool = False, open_events: int = 0) -> Text:
    """``open_events``: enforced breaker events still open — a ready checklist does not make expansion
    ready while they are (the governance cycle does not propose then)."""
    text = Text()
    if doc is None:
        return Text("assessing…", "dim")
    o = doc["overall"]
    text.append(f"{pct(o['score'])} ", "bold")
    text.append(f"({o['points']}/{o['possible']} points) ")
    if o["ready"] and open_events:
        text.append(f"checklist ready — {open_events} open event{'s' if open_events != 1 else ''} "
                    f"block{'s' if open_events == 1 else ''} expansion", "bold yellow")
    else:
        text.append("READY" if o["ready"] else "not ready", "bold green" if o["ready"] else "yellow")
    if brief:  # one line: the readiness screen lists the items below it
        text.append(" · " + " · ".join(f"{c} {pct(doc[c]['score'], 0)}" for c in CATEGORIES))
        return text
    text.append("\n")
    for cat in CATEGORIES:
        score = doc[cat]["score"]
        text.append(f"{cat:<15}{bar(score)} {pct(score, 0):>5}\n")
    if o["blockers"]:
        text.append(f"Blockers ({len(o['blockers'])}):\n", "bold red")
        for name in o["blockers"]:
            text.append(f" ✗ {name}\n", "red")
    recs = doc.get("recommendations") or []
    if recs:
        text.append(f"Recommendation: {recs[0]['type']}", "bold")
        text.append(f" — {recs[0]['rationale']}")
    return text


def hour_ticks(hours: tuple[float, ...]) -> tuple[tuple[float, str], ...]:
    if not hours:
        return ()
    return ((hours[0], f"-{-hours[0]:.0f}h"), (hours[len(hours) // 2], f"-{-hours[len(hours) // 2]:.0f}h"),
            (hours[-1], "now"))


RATE_TICKS = (0.0, 50.0, 100.0)


def trend_specs(slow: SlowData) -> tuple[PlotSpec, PlotSpec, PlotSpec]:
    """Rates on a fixed 0–100% axis (success near the top, errors near the bottom: never on the same
    rows); volume from 0 to a top that one busy hour cannot inflate (plot.robust_top); readiness 0–100%."""
    t = slow.trends
    if t is None:
        return PlotSpec(), PlotSpec(), PlotSpec()
    ticks = hour_ticks(t.hours)
    rates = PlotSpec((Series("success %", t.hours, t.success), Series("error %", t.hours, t.error)),
                     xticks=ticks, ylim=(0.0, 100.0), yticks=RATE_TICKS, unit="%",
                     empty="no commands in the last 48 hours")
    volume = PlotSpec((Series("commands", t.hours, tuple(float(v) for v in t.volume), bars=True),),
                      xticks=ticks, empty="no commands in the last 48 hours")
    readiness = PlotSpec(empty="no readiness history yet: each governance cycle (c) records one",
                         ylim=(0.0, 100.0), yticks=RATE_TICKS, unit="%")
    xs = t.readiness_days
    if xs:
        series = [Series("readiness %", xs, t.readiness)]
        last = max(xs[-1], 0.0)
        end = last
        if t.readiness_crossing_days is not None:  # the projection, from now to the predicted crossing
            end = t.readiness_crossing_days
            series.append(Series("projected", (xs[-1], end), (t.readiness[-1], 95.0)))
        series.append(Series("95% ready", (min(xs), max(end, last)), (95.0, 95.0)))
        ticks = ((min(xs), f"{min(xs):.0f}d"), (0.0, "now")) + (((end, f"+{end:.0f}d"),) if end > 1 else ())
        readiness = replace(readiness, series=tuple(series), xticks=ticks)
    return rates, volume, readiness


def volume_note(slow: SlowData) -> str:
    """Says where a busy hour was cut at the top of the volume plot (its real height)."""
    t = slow.trends
    if t is None or not t.volume:
        return ""
    top, clipped = robust_top([float(v) for v in t.volume])
    if not clipped:
        return ""
    peak = max(range(len(t.volume)), key=lambda i: t.volume[i])
    return f"busiest hour {t.volume[peak]} commands at {-t.hours[peak]:.0f}h ago (cut at {top:.0f}+)"


def unresolved_cells(e: dict[str, Any]) -> tuple[Text, Text]:
    """Two lines a row, so that a half-width pane (120 columns: 55 inside) shows it all: when and
    severity; the rule, then the command type and what the trip did."""
    when = Text(short_time(e["timestamp"]) + "\n")
    when.append(e["severity"], SEVERITY_STYLE.get(e["severity"], ""))
    what = Text(e["ruleName"] + "\n", "bold")
    what.append(" · ".join(filter(None, (e["commandType"], e["action"] + (" (shadow)" if e["shadow"] else "")))),
                "dim")
    return when, what


def pending_cells(p: dict[str, Any]) -> tuple[str, str, str]:
    """Two lines a row (as unresolved_cells): id and phases; roles still needed and expiry; the command
    types it would whitelist, half on each line."""
    e = p["expansion"]
    cmds = list(e["commandsToWhitelist"])
    half = (len(cmds) + 1) // 2
    return (f"{p['proposalId']}\n{e['currentPhase']}→{e['targetPhase']}",
            f"{', '.join(p['stillNeeded']) or 'none'}\nexp {short_time(p.get('expiresAt'))}",
            (", ".join(cmds[:half]) + ("," if cmds[half:] else "") + "\n" + ", ".join(cmds[half:])) if cmds
            else "nothing")


class DashboardScreen(GovScreen):
    SCREEN_NAME = "dashboard"
    SCREEN_TITLE = "1 Dashboard"
    FILTER_WHAT = "unresolved events"

    class Completed(Message):
        """The first complete dashboard (live panes, readiness, the plots) has been painted."""

    class PlotsRendered(Message):
        """The plots of one slow refresh, rendered together in a worker: (plot, key, rendering)."""

        def __init__(self, done: tuple[tuple[Plot, tuple, Text], ...]) -> None:
            super().__init__()
            self.done = done

    def __init__(self) -> None:
        super().__init__()
        self.completed_at: float | None = None   # perf_counter() when the first complete dashboard was painted
        self._parts: set[str] = set()
        self._plot_specs: set[PlotSpec] = set()
        self._shown: dict[str, Any] = {}

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="dash"):
            with Vertical(id="dash-left", classes="column"):
                yield Pane(Static("loading…", id="breakers"), title="Circuit breakers", id="pane-breakers")
                yield Pane(Table(("when", "rule / command type · action"), id="unresolved"),
                           Static("", id="unresolved-note"),
                           title="Unresolved events  (Enter drill down · r resolve)", id="pane-unresolved")
                yield Pane(Table(("proposal", "needs · expires", "whitelist +"), id="pending"),
                           Static("", id="pending-note"),
                           title="Pending proposals  (a approve · x reject)", id="pane-pending")
            with Vertical(id="dash-right", classes="column"):
                yield Pane(Static("assessing…", id="readiness"), title="Readiness", id="pane-readiness")
                yield Pane(Static("Success % (top line) and error % (bottom line), hourly", classes="plot-title"),
                           Plot(id="plot-rates"),
                           Static("Commands finished per hour", classes="plot-title"), Plot(id="plot-volume"),
                           Static("Readiness score over time (95% line: ready)", classes="plot-title"),
                           Plot(id="plot-readiness"), Static("", id="trend-notes"),
                           title="Trends", id="pane-trends")

    def on_live(self, live: LiveData) -> None:
        half_open = dict((live.status or {}).get("halfOpen") or {})
        self._update("#breakers", (live.rules, tuple(sorted(half_open.items()))),
                     lambda: breaker_table(live.rules, half_open) if live.rules else "no rules")
        events = [e for e in live.unresolved if self._match(e)]
        self.query_one("#unresolved", Table).set_rows((e["id"], unresolved_cells(e)) for e in events)
        note = "none: every tripped breaker has been resolved" if not live.unresolved else \
            (f"filter {self.filter_text!r}: {len(events)} of {len(live.unresolved)}" if self.filter_text else "")
        self._update("#unresolved-note", note)
        pending = live.pending
        self.query_one("#pending", Table).set_rows((p["proposalId"], pending_cells(p)) for p in pending)
        self._update("#pending-note",
                     "" if pending else "none pending: the governance cycle (c) proposes when readiness allows")
        slow = self.app.slow
        if slow is not None and slow.readiness is not None:
            self._show_readiness(slow.readiness, live)
        self._part_done("live")

    def _show_readiness(self, doc: dict[str, Any], live: LiveData | None) -> None:
        """The readiness pane: a ready checklist with enforced events open says they block expansion."""
        n = sum(1 for e in live.unresolved if not e["shadow"]) if live is not None and live.ok else 0
        # keyed by the content, not the object: each slow refresh reads a new dict, mostly equal to the last one,
        # and an unchanged pane is not rebuilt; nor redrawn when a changed dict shows the same text (the report's
        # fields that the pane does not show change with every read)
        if self._shown.get("#readiness-doc", _NOTHING) == (doc, n):
            return
        self._shown["#readiness-doc"] = (doc, n)
        self._update("#readiness", readiness_text(doc, open_events=n))

    def on_slow(self, slow: SlowData) -> None:
        """Readiness and the trends. The plots that changed are rendered together in one worker, and
        readiness and the notes shown with them when they are done: the slow refresh reaches the screen in
        one frame (not one for the texts and one per plot), and each frame costs the event loop its
        compositing."""
        if slow.trends is None:
            self._show_slow(slow)
            return
        specs = trend_specs(slow)
        if slow.readiness is not None and self.completed_at is None:
            self._plot_specs = set(specs)
            self._part_done("slow")
        jobs = []
        for selector, spec in zip(("#plot-rates", "#plot-volume", "#plot-readiness"), specs, strict=True):
            plot = self.query_one(selector, Plot)
            key = plot.wanted(spec)
            if key is not None:
                jobs.append((plot, key))
        if not jobs:
            self._show_slow(slow)
            return

        def work() -> None:
            done: list[tuple[Plot, tuple, Text]] = []
            try:
                for plot, key in jobs:
                    done.append((plot, key, Plot.render_key(key)))
            finally:  # the texts wait for this message: it comes even when a plot failed
                self.post_message(self.PlotsRendered(tuple(done)))

        self.run_worker(work, thread=True, group="plot", exit_on_error=False)

    @on(PlotsRendered)
    def _plots_rendered(self, message: PlotsRendered) -> None:
        for plot, key, visual in message.done:
            if plot.apply(key, visual):
                self._plot_shown(key[0])
        if self.app.slow is not None:  # the newest read (a later one may have arrived meanwhile)
            self._show_slow(self.app.slow)

    def _show_slow(self, slow: SlowData) -> None:
        if slow.readiness is not None:
            self._show_readiness(slow.readiness, self.app.live)
        if slow.trends is None:
            return
        notes = Text()
        cut = volume_note(slow)
        if cut:
            notes.append(f"{cut}\n", "dim")
        for warning in slow.trends.rate_warnings:
            notes.append(f"⚠ {warning}\n", "yellow")
        notes.append(slow.trends.readiness_note, "dim")
        self._update("#trend-notes", notes)

    def _update(self, selector: str, key: Any, content: Callable[[], Any] | None = None) -> None:
        """Update a Static only when what it shows changed (``key``; the content itself when no builder
        is given), and lay the screen out again only when its height changed (repaint.update_in_place):
        a layout of the whole screen is most of what a refresh costs the event loop."""
        if self._shown.get(selector, _NOTHING) == key:
            return
        self._shown[selector] = key
        update_in_place(self.query_one(selector, Static), safe(content() if content is not None else key))

    # --- the first complete dashboard (benchmarks measure launch up to it) ----------------------

    @on(Plot.Rendered)
    def _plot_rendered(self, message: Plot.Rendered) -> None:  # a plot rendered on its own (a resize)
        self._plot_shown(message.key[0])

    def _plot_shown(self, spec: PlotSpec) -> None:
        if spec in self._plot_specs:
            self._plot_specs.discard(spec)
            if not self._plot_specs:
                self._part_done("plots")

    def _part_done(self, part: str) -> None:
        """Live panes, readiness and the three plots of the loaded data shown: once the screen has been
        painted after that, note the time (and write it to $GOVCON_BENCH_READY_FILE when set)."""
        if self.completed_at is not None or part in self._parts:
            return
        self._parts.add(part)
        if self._parts == {"live", "slow", "plots"}:
            self.call_after_refresh(self._painted)

    def _painted(self) -> None:
        self.completed_at = time.perf_counter()
        self.post_message(self.Completed())
        path = os.environ.get(READY_FILE_ENV)
        if path:
            with open(path, "w") as f:
                f.write(f"{time.time():.6f}\n")

    def _match(self, event: dict[str, Any]) -> bool:
        return not self.filter_text or matches(self.filter_text, event["ruleName"], event["commandType"],
                                               event["severity"], event["action"])

    def apply_filter(self, text: str) -> None:
        self.filter_text = text
        if self.app.live is not None and self.app.live.ok:
            self.on_live(self.app.live)

    def selected_event(self) -> dict[str, Any] | None:
        key = self.query_one("#unresolved", Table).selected_key
        live = self.app.live
        return next((e for e in live.unresolved if e["id"] == key), None) if live and key else None

    def selected_proposal(self) -> dict[str, Any] | None:
        key = self.query_one("#pending", Table).selected_key
        live = self.app.live
        return next((p for p in live.pending or () if p["proposalId"] == key), None) if live and key else None
