"""The key bar at the bottom of every screen: the contract's keys, then the screen's own, wrapped onto a
second line when the terminal is narrow (Textual's Footer cuts them off at 80 columns)."""

from __future__ import annotations

from textual.binding import Binding
from textual.markup import escape
from textual.widgets import Static

from screens.keys import KEYS, SCREEN_GROUP, SCREENS

ITEM_GAP = 2


def key_items(extra: list[Binding], screen: str = "") -> list[tuple[str, str]]:
    """The contract's keys that apply on ``screen`` (a, x, r only where something can be selected for
    them), then the screen's own."""
    items: list[tuple[str, str]] = [(f"1-{len(SCREENS)}", "Screens")]
    items += [(k.footer or k.display, k.label) for k in KEYS
              if k.show and k.group is not SCREEN_GROUP and (not screen or k.applies_on(screen))]
    items += [(b.key_display or b.key, b.description) for b in extra if b.show]
    return items


def pack(items: list[tuple[str, str]], width: int) -> str:
    """Content markup, items packed greedily into lines no wider than ``width``."""
    lines: list[str] = []
    line, used = "", 0
    for key, label in items:
        size = len(key) + 1 + len(label)
        if used and used + ITEM_GAP + size > width:
            lines.append(line)
            line, used = "", 0
        elif used:
            line += " " * ITEM_GAP
            used += ITEM_GAP
        line += f"[b $accent]{escape(key)}[/] {escape(label)}"
        used += size
    return "\n".join(lines + [line])


class KeyBar(Static):
    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: auto; max-height: 3; background: $panel; padding: 0 1; }
    """

    def __init__(self, extra: list[Binding], screen: str = "") -> None:
        super().__init__("")
        self.items = key_items(extra, screen)
        self._width = -1

    def on_resize(self) -> None:
        width = self.content_region.width or self.size.width
        if width != self._width:
            self._width = width
            self.update(pack(self.items, max(width, 20)))

    def on_mount(self) -> None:
        self.update(pack(self.items, max(self.app.size.width - 2, 20)))
