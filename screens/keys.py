"""The console keys (DESIGN.md, "Console keys (contract)"): one table for the footer, `?` help and the
command palette, so the three never disagree."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType

SCREENS: tuple[tuple[str, str, str], ...] = (
    ("1", "dashboard", "Dashboard"),
    ("2", "events", "Breaker events"),
    ("3", "readiness", "Readiness"),
    ("4", "proposals", "Proposals"),
    ("5", "rules", "Rules"),
    ("6", "reports", "Reports"),
    ("7", "audit", "Audit"),
    ("8", "actions", "Actions"),
)
SCREEN_GROUP = Binding.Group("screens", compact=True)
# The kill switch's chord: works with a text field focused (where `!` is typed). Not a key Textual's Input
# or TextArea binds (ctrl+a/c/d/e/k/u/v/w/x/y/z), not the App's (ctrl+c, ctrl+q, ctrl+p), not tmux's
# prefix (ctrl+b), not a terminal's own (ctrl+s/ctrl+q flow control, ctrl+z, ctrl+h/i/j/m).
KILL_CHORD = "ctrl+g"
DECIDING = ("dashboard", "proposals", "actions")   # where a proposal or an action request can be selected


@dataclass(frozen=True)
class Key:
    key: str            # Textual key name
    display: str        # as the operator types it
    action: str
    label: str          # footer
    id: str
    tooltip: str        # help and palette text
    priority: bool = False
    show: bool = True
    group: Binding.Group | None = None
    footer: str = ""    # the key bar's display, when it differs from ``display``
    screens: tuple[str, ...] = ()   # the screens it applies on (the key bar and palette show it there); () all

    def applies_on(self, screen: str) -> bool:
        return not self.screens or screen in self.screens

    def binding(self) -> Binding:
        return Binding(self.key, self.action, self.label, show=self.show, key_display=self.display,
                       priority=self.priority, id=self.id, tooltip=self.tooltip, group=self.group)


KEYS: tuple[Key, ...] = (
    *(Key(k, k, f"show('{name}')", title, f"screen.{name}", f"Show the {title.lower()} screen",
          group=SCREEN_GROUP) for k, name, title in SCREENS),
    Key("a", "a", "approve", "Approve", "proposal.approve",
        "Approve the selected proposal as one of your roles; on 8 the selected action request (confirmation "
        "first)", screens=DECIDING),
    Key("x", "x", "reject", "Reject", "proposal.reject",
        "Reject the selected proposal; on 8 the selected action request (with a reason)", screens=DECIDING),
    Key("r", "r", "resolve", "Resolve", "event.resolve",
        "Resolve the selected breaker event, with a note (and whether it was a false positive)",
        screens=("dashboard", "events", "drilldown")),
    Key("enter", "Enter", "drilldown", "Drill down", "event.drilldown",
        "Drill down into the selected breaker event: the commands and incidents that made it trip, the rule's "
        "metric against its threshold, the effect and the resolution (Esc goes back)", screens=("events",)),
    Key("L", "L", "revert", "Revert L3", "phase.revert",
        "Revert to L3 now: phase L3, whitelist cleared (confirmation and reason first)"),
    Key("exclamation_mark", "!", "kill_switch", "Kill switch", "kill-switch",
        "Kill switch: ! then Enter engages it from any screen (when no text field has focus: there ! is just "
        "a character); when engaged, ! asks a reason to release it", footer=f"!/{KILL_CHORD}"),
    Key(KILL_CHORD, KILL_CHORD, "kill_switch", "Kill switch", "kill-switch.chord",
        f"Kill switch from anywhere, text fields and dialogs included: {KILL_CHORD} then Enter engages it",
        priority=True, show=False),
    Key("c", "c", "cycle", "Cycle", "cycle.run",
        "Run the governance cycle now: metrics, readiness, report, and a proposal when ready"),
    Key("slash", "/", "filter", "Filter", "filter",
        "Filter the list on this screen as you type (audit: search); Enter keeps the filter, Esc clears it",
        screens=tuple(name for _, name, _ in SCREENS)),
    Key("question_mark", "?", "help", "Help", "help", "Show every key and what it does"),
    Key("colon", ":", "command_palette", "Palette", "palette", "Open the command palette (also ctrl+p)",
        show=False),
    Key("q", "q", "quit", "Quit", "quit", "Leave the console (the store keeps everything)"),
)


def bindings() -> list[BindingType]:
    return [k.binding() for k in KEYS]
