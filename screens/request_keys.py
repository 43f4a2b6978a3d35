"""`a` and `x` on screen 8: approve or reject the selected action request. What can be checked before
the dialog is checked there (nothing selected, no longer pending, no approver role, four eyes, the kill
switch, read_only), so a refusal comes at once, not after a confirmation; the engine checks it all
again in its write transaction, and its refusal arrives as a notification naming the reason."""

from __future__ import annotations

from typing import Any

from engine.clock import isoformat
from screens.action_view import approval_refusal, approvers, expires_in, four_eyes_refusal, role_refusal, scope
from screens.fmt import short_time
from screens.modals import Ask, ConfirmModal


def _decidable(app, screen, verb: str) -> dict[str, Any] | None:
    """The selected pending request, or None after telling the operator why there is none."""
    request = screen.selected_request()
    if request is None:
        row = screen.selected_action()
        what = f"{row['grantId']} is a grant, not a request; " if row is not None else ""
        app.notify(f"{what}select a pending request (the first list on 8) to {verb} first",
                   title="Nothing selected", severity="warning")
        return None
    rid = request["requestId"]
    if request["status"] != "pending":
        by = request.get("decidedBy")
        when = f" at {short_time(request['decidedAt'])}" if request.get("decidedAt") else ""
        how = f"{request['status']} by {by}{when}" if by else f"{request['status']} undecided{when}"
        app.notify(f"{rid} was {how}; only a pending request can be {verb}d", title="Refused", severity="warning")
        return None
    if request["expiresAt"] <= isoformat(app.gov.clock.now()):
        app.notify(f"{rid} expired at {short_time(request['expiresAt'])} before anyone decided it (it counts as "
                   "rejected); the agent must ask again", title="Refused", severity="warning")
        return None
    roles = app.live.roles if app.live is not None else frozenset()
    refusal = role_refusal(request, app.operator, roles)
    if refusal is not None:
        app.notify(refusal, title="Not allowed", severity="error", markup=False)
        return None
    return request


def approve_request(app, screen) -> None:
    request = _decidable(app, screen, "approve")
    if request is None:
        return
    view = screen.view
    four_eyes = four_eyes_refusal(request, app.operator, bool(view and view.four_eyes_relaxed))
    if four_eyes is not None:
        app.notify(four_eyes, title="Not allowed", severity="error", markup=False)
        return
    blocked = approval_refusal(app.live.status)
    if blocked is not None:
        app.notify(f"{blocked}; {request['requestId']} stays pending", title="Refused", severity="error",
                   markup=False)
        return
    rid, agent, what = request["requestId"], request["agent"], scope(request)
    held = ", ".join(r for r in approvers(request) if r in app.live.roles)
    body = (f"A grant lets {agent} run {what} once, from now until the grant expires (policy grant_ttl, "
            f"default 15m); it counts against the budget. Asked by {request['requestedBy']}: {request['reason']}. "
            f"You approve as {app.operator} ({held}); the request expires "
            f"{expires_in(app.gov.clock.now(), request['expiresAt'])}.")

    def done(result: dict[str, Any] | None) -> None:
        if result is None:
            return
        book, actor, note = app.gov.actions, app.operator, result["reason"]

        def said(doc: dict[str, Any]) -> str:
            grant = doc.get("grant") or {}
            return (f"approved {rid}: grant {grant.get('grantId')} lets {agent} run {what} once "
                    f"(expires {short_time(grant.get('expiresAt'))})")
        app.perform(lambda: book.approve(actor, rid, note), said, title="Approved")

    note = Ask(reason_label="Note (optional):", reason_optional=True,
               reason_default=f"approved on the console by {app.operator}")
    app.push_screen(ConfirmModal(f"Approve {what} for {agent}: a grant lets it act once, now", body,
                                 confirm="Approve", ask=note), done)


def reject_request(app, screen) -> None:
    request = _decidable(app, screen, "reject")
    if request is None:
        return
    rid, agent, what = request["requestId"], request["agent"], scope(request)

    def done(result: dict[str, Any] | None) -> None:
        if result is None:
            return
        book, actor, reason = app.gov.actions, app.operator, result["reason"]
        app.perform(lambda: book.reject(actor, rid, reason),
                    lambda doc: f"rejected {rid}: {agent} is told no and {what} does not run", title="Rejected")

    app.push_screen(ConfirmModal(
        f"Reject {what} for {agent}",
        f"The request {rid} is closed as rejected: nothing runs, and {agent} (waiting with --wait, or polling) "
        "is told no with your reason.", confirm="Reject", ask=Ask(reason_label="Reason:")), done)
