"""`govcon events show ID` (a breaker event's drill-down) and `govcon readiness --explain` (why not ready):
each a one-line call into the engine, rendered by the same text the console shows.

The text renderers (screens.drilldown_text, screens.explain_text) are imported only to print text: they
bring Rich, which --json and every other command never need."""

from __future__ import annotations

from typing import Any


def show_event(ctx: Any) -> int:
    doc = ctx.gov.drilldown.show(ctx.args.id)
    if ctx.args.json:
        ctx.emit_json(doc)
    else:
        from screens.drilldown_text import drilldown_text
        print(drilldown_text(doc).plain, file=ctx.out)
    return 0


def readiness_explained(ctx: Any, print_readiness) -> int:
    doc, ex = ctx.gov.explainer.explain()
    if ctx.args.json:
        ctx.emit_json({**doc, "explain": ex})
    else:
        from screens.explain_text import explain_text
        print_readiness(doc, ctx.out)
        print("", file=ctx.out)
        print(explain_text(ex).plain, file=ctx.out)
    return 0
