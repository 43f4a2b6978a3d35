"""Control characters never reach the terminal: console/render.py ``clean`` (the CLI) and screens/fmt.py
``clean`` (the console; the CLI's calls it) escape the same characters the same way; ``safe`` keeps a Rich Text's styles while escaping (issue 11 pt 6)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.text import Text

from console import render
from screens import fmt

HOSTILE = ["\x1b[2J\x1b[H", "\x1b]0;pwned\x07", "\x9b31m", "\r", "\x08\x08", "\x00", "\x7f", "\u202e", "\u2066",
           "\u200f", "\u2028", "\x85", "\x0b\x0c", "\x1bc"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_each_control_character_shows_escaped(bad):
    shown = render.clean(f"restart{bad}service")
    assert shown.isprintable() and shown.startswith("restart\\") and shown.endswith("service")
    assert fmt.clean(f"restart{bad}service") == shown
    assert render.clean("x\x1by") == "x\\x1by" and render.clean("a\u202eb") == "a\\u202eb"


def test_ordinary_text_is_untouched():
    for text in ("restart_service", "Kill switch — ENGAGED…", "ünïcødé ok", "█░ 12.5%", "a b"):
        assert render.clean(text) == text == fmt.clean(text)
    assert render.clean(["a", "b\x1b"]) == "a, b\\x1b"


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_the_two_cleans_agree_and_leave_nothing_unprintable(text):
    cli = render.clean(text, keep="\n\t")
    assert fmt.clean(text) == cli
    assert all(line.isprintable() for part in cli.split("\n") for line in part.split("\t"))
    assert render.clean(text).isprintable()  # keep="" escapes newlines too
    assert render.clean(cli, keep="\n\t") == cli  # idempotent


def test_the_stream_escapes_what_any_printer_writes_and_json_stays_json():
    buf = io.StringIO()
    out = render.CleanStream(buf)
    out.write("type x\x1b[2J\r\n")
    json.dump({"type": "x\x1b[2J\u202e"}, out)
    assert buf.getvalue().startswith("type x\\x1b[2J\\r\n")
    assert json.loads(buf.getvalue().split("\n", 1)[1]) == {"type": "x\x1b[2J\u202e"}
    assert out.getvalue() == buf.getvalue()  # anything else is the wrapped stream's


def test_log_lines_show_escapes():
    record = logging.LogRecord("govcon.alerts", logging.ERROR, __file__, 1, "paused %s", ("x\x1b[2J",), None)
    assert render.CleanFormatter("%(message)s").format(record) == "paused x\\x1b[2J"


def test_safe_keeps_styles_and_leaves_clean_text_alone():
    t = Text("type ")
    t.append("x\x1b[2J\u202e", "bold red")
    t.append(" paused")
    shown = fmt.safe(t)
    assert shown.plain == "type x\\x1b[2J\\u202e paused"
    assert [(shown.plain[s.start:s.end], str(s.style)) for s in shown.spans] == [("x\\x1b[2J\\u202e", "bold red")]
    plain = Text("nothing odd", "green")
    assert fmt.safe(plain) is plain
    assert fmt.safe("[b]x\x1b[/b]") == "[b]x\\x1b[/b]"
    table = object()
    assert fmt.safe(table) is table
