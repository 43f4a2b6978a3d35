"""A small Python client for autonomous agents: ask govcon's gate, wait for a human when the action
needs approval, and report the outcome against the grant (DESIGN.md "Governed actions"; HTTP, httpx).

    from console.agent_client import GovconClient, ActionRefused

    client = GovconClient("http://127.0.0.1:4007", agent="rollback-bot")   # token: GOVCON_TOKEN
    try:
        with client.action("restart_service", service="api", confidence=0.93, wait=600) as act:
            restart_api()                 # an exception here reports ``failed`` (and is re-raised)
            if not healthy():
                roll_back()
                act.rolled_back()         # reports ``rolled_back`` instead of ``succeeded``
    except ActionRefused as refused:      # denied, rejected, expired or still undecided: nothing ran
        log.warning("not restarting: %s", refused)

It lives in ``console/`` because it is the other end of the HTTP API (``govcon serve``), and it imports
nothing from engine/ or storage/: an agent needs httpx and this one file. The agent lease (DESIGN.md
"Agents and leases"): ``client.heartbeat()`` renews it; ``client.action(..., heartbeat=10)`` beats before
asking and every 10 s inside the block, and a beat whose reply suspends autonomy (kill switch, read_only)
makes the block's next ``act.check_kill_switch()`` raise.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import httpx

DEFAULT_URL = "http://127.0.0.1:4007"
#: the server caps one long poll at 300 s (console/api_actions.py MAX_WAIT_SECONDS); longer waits loop
LONG_POLL_MAX = 300.0
OUTCOMES = ("succeeded", "failed", "rolled_back")


class GovconClientError(Exception):
    """Anything the client could not do; ``str(err)`` says what and why."""


class ServerError(GovconClientError):
    """govcon answered with an error status (or could not be reached)."""

    def __init__(self, message: str, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class ActionRefused(GovconClientError):
    """The action may not run: nothing was granted. ``decision`` is the gate's answer (and ``request``
    the action request, when one was queued)."""

    def __init__(self, message: str, decision: dict[str, Any] | None = None,
                 request: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.decision = decision or {}
        self.request = request


class ActionDenied(ActionRefused):
    """The gate answered deny (kill switch, read_only mode, a refused input, a store failing closed)."""


class ApprovalNeeded(ActionRefused):
    """The gate wants a human, and no request was queued (``wait=0``) or it was not decided in time."""


class ActionRejected(ActionRefused):
    """A human rejected the action request (``request["note"]`` says why)."""


class ActionExpired(ActionRefused):
    """Nobody decided the action request before it expired (it counts as rejected)."""


class OutcomeNotReported(GovconClientError):
    """The outcome could not be reported; the grant expires by itself (an alert names the agent)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class GovconClient:
    """One govcon server. ``token`` (or GOVCON_TOKEN) is a bearer token whose operator holds a role:
    queueing an action request and reporting outcomes change the store, so both need it."""

    def __init__(self, base_url: str | None = None, *, token: str | None = None, agent: str | None = None,
                 timeout: float = 10.0, client: httpx.Client | None = None) -> None:
        self.base_url = (base_url or os.environ.get("GOVCON_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("GOVCON_TOKEN") or None
        self.agent = agent
        self.timeout = timeout
        self._owns_http = client is None
        self._http = client or httpx.Client(timeout=timeout, follow_redirects=False,
                                            headers={"User-Agent": "govcon-agent-client"})

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> GovconClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:  # never the token
        return f"GovconClient({self.base_url!r}, agent={self.agent!r}, token={'set' if self.token else 'unset'})"

    # --- HTTP -----------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
                 timeout: float | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self._http.request(method, self.base_url + path, json=json, params=params, headers=headers,
                                          timeout=timeout if timeout is not None else self.timeout)
        except httpx.HTTPError as exc:
            raise ServerError(f"cannot reach govcon at {self.base_url} ({method} {path}): "
                              f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:300]
            raise ServerError(f"govcon answered {response.status_code} to {method} {path}: {detail}",
                              response.status_code, detail)
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"govcon answered {method} {path} with something that is not JSON",
                              response.status_code) from None

    # --- the calls ------------------------------------------------------------------------------

    def ask(self, command_type: str, *, service: str | None = None, confidence: float | None = None,
            action_class: str | None = None, request: bool = False, agent: str | None = None) -> dict[str, Any]:
        """POST /api/gate: the decision (``decision``, ``reason``, ``grantId`` on allow, ``requestId`` when
        a request was queued)."""
        body = {"commandType": command_type, "service": service, "confidence": confidence,
                "actionClass": action_class, "agent": agent or self.agent, "request": request}
        return self._request("POST", "/api/gate", json={k: v for k, v in body.items() if v is not None})

    def show(self, action_id: str, *, wait: float = 0.0) -> dict[str, Any]:
        """GET /api/actions/{id}; with ``wait`` the server holds the answer until a pending request is
        decided or ``wait`` seconds pass (at most 300 a call)."""
        wait = max(0.0, min(wait, LONG_POLL_MAX))
        return self._request("GET", f"/api/actions/{action_id}", params={"wait": f"{wait:g}"} if wait else None,
                             timeout=self.timeout + wait)

    def wait_for_decision(self, request_id: str, timeout: float) -> dict[str, Any]:
        """Long-poll until the request is no longer pending or ``timeout`` seconds pass; returns ``show``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            doc = self.show(request_id, wait=max(left, 0.0))
            if (doc.get("request") or {}).get("status") != "pending" or time.monotonic() >= deadline:
                return doc

    def report(self, grant_id: str, command_type: str, status: str, *, service: str | None = None) -> dict[str, Any]:
        """POST /api/events: the outcome as a command event whose id is the grant id."""
        if status not in OUTCOMES:
            raise ValueError(f"outcome {status!r} is not one of {', '.join(OUTCOMES)}")
        event = {"kind": "command", "id": grant_id, "type": command_type, "status": status, "autonomous": True,
                 "at": _now()}
        if service:
            event["service"] = service
        try:
            doc = self._request("POST", "/api/events", json=[event])
        except ServerError as exc:
            if exc.status in (409, 422):  # refused: e.g. a second outcome that contradicts the first
                raise OutcomeNotReported(f"govcon refused the outcome {status} for {grant_id}: {exc.detail}") from exc
            raise
        if doc.get("rejected"):
            errors = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in doc.get("errors", [])) or "rejected"
            raise OutcomeNotReported(f"govcon refused the outcome {status} for {grant_id}: {errors}")
        return doc

    def kill_switch(self) -> dict[str, Any]:
        """The kill switch as govcon sees it ({engaged, by, at, reason}); check it between steps. The
        server caches this read for at most a second: a switch engaged through another process (the
        CLI, the console) shows within that; the gate itself never answers from the cache."""
        return self._request("GET", "/api/governance/state").get("killSwitch") or {}

    def heartbeat(self, agent: str | None = None, *, ttl: int | None = None) -> dict[str, Any] | None:
        """Renew the agent's lease for ``ttl`` seconds (server default 60) from the server's clock
        (POST /api/agents/{name}/heartbeat, DESIGN.md "Agents and leases"); the first beat registers the
        agent. The reply carries ``autonomy`` (granted or suspended), ``reason``, ``killSwitch``, ``mode``
        and ``leaseExpiresAt``. A server without leases answers 404, returned here as None."""
        name = agent or self.agent
        if not name:
            raise GovconClientError("a heartbeat needs the agent's name: GovconClient(agent=NAME)")
        try:
            return self._request("POST", f"/api/agents/{name}/heartbeat", json={} if ttl is None else {"ttl": ttl})
        except ServerError as exc:
            if exc.status in (404, 405):
                return None
            raise

    def action(self, command_type: str, *, service: str | None = None, confidence: float | None = None,
               action_class: str | None = None, wait: float = 600.0, agent: str | None = None,
               heartbeat: float | None = None) -> Action:
        """A governed action as a context manager: entering asks the gate (and, when it needs approval,
        queues a request and waits up to ``wait`` seconds for a human; ``wait=0`` queues none); leaving
        reports succeeded, failed (an exception) or rolled_back (``act.rolled_back()``). With
        ``heartbeat=SECONDS`` the agent beats before asking and every SECONDS inside the block."""
        return Action(self, command_type, service=service, confidence=confidence, action_class=action_class,
                      wait=wait, agent=agent, heartbeat=heartbeat)


class Action:
    """One granted action. ``grant_id`` is set once inside the ``with`` block."""

    def __init__(self, client: GovconClient, command_type: str, *, service: str | None, confidence: float | None,
                 action_class: str | None, wait: float, agent: str | None, heartbeat: float | None = None) -> None:
        if heartbeat is not None and not heartbeat > 0:
            raise GovconClientError(f"heartbeat={heartbeat!r}: the seconds between beats must be positive")
        self.client = client
        self.heartbeat = heartbeat
        #: the newest heartbeat reply (None before the first, or without ``heartbeat``)
        self.last_beat: dict[str, Any] | None = None
        self._beating: threading.Event | None = None
        self.command_type = command_type
        self.service = service
        self.confidence = confidence
        self.action_class = action_class
        self.wait = wait
        self.agent = agent
        self.grant_id: str | None = None
        self.decision: dict[str, Any] | None = None
        self.request: dict[str, Any] | None = None
        self.outcome: str | None = None
        self._rolled_back = False

    def rolled_back(self) -> None:
        """The action was undone: report ``rolled_back`` on leaving the block (exception or not)."""
        self._rolled_back = True

    def check_kill_switch(self) -> None:
        """Raise ActionDenied when the kill switch is engaged: call it between an action's steps."""
        beat = self.last_beat
        if beat is not None and beat.get("autonomy") == "suspended":
            raise ActionDenied(f"autonomy suspended at the last heartbeat: {beat.get('reason')}", self.decision)
        state = self.client.kill_switch()
        if state.get("engaged"):
            raise ActionDenied(f"kill switch engaged by {state.get('by')}: {state.get('reason')}", self.decision)

    def __enter__(self) -> Action:
        if not self.client.token:
            raise GovconClientError("an action reports its outcome, which needs a token: pass token=… or set "
                                    "GOVCON_TOKEN (an admin creates one with `govcon tokens create USER`)")
        if self.heartbeat is not None:
            self.last_beat = self.client.heartbeat(self.agent)
            if self.last_beat is not None and self.last_beat.get("autonomy") == "suspended":
                raise ActionDenied(f"autonomy suspended: {self.last_beat.get('reason')}", self.decision)
        queue = self.wait > 0
        decision = self.client.ask(self.command_type, service=self.service, confidence=self.confidence,
                                   action_class=self.action_class, request=queue, agent=self.agent)
        self.decision = decision
        verdict = decision.get("decision")
        if verdict == "allow" and decision.get("grantId"):
            self.grant_id = decision["grantId"]
            self._start_beating()
            return self
        if verdict == "allow":
            raise ActionDenied("govcon allowed without issuing a grant (an old server?): not acting", decision)
        if verdict != "needs_approval":
            raise ActionDenied(f"denied: {decision.get('reason')}", decision)
        request_id = decision.get("requestId")
        if not queue or request_id is None:
            why = "" if queue else " (wait=0: no request queued)"
            raise ApprovalNeeded(f"needs approval: {decision.get('reason')}{why}"
                                 + (f"; {decision['requestError']}" if decision.get("requestError") else ""), decision)
        shown = self.client.wait_for_decision(request_id, self.wait)
        request = shown.get("request") or {}
        self.request = request
        status = request.get("status")
        if status == "approved" and (shown.get("grant") or {}).get("grantId"):
            self.grant_id = shown["grant"]["grantId"]
            self._start_beating()
            return self
        if status == "rejected":
            raise ActionRejected(f"action request {request_id} rejected by {request.get('decidedBy')}: "
                                 f"{request.get('note')}", decision, request)
        if status == "expired":
            raise ActionExpired(f"action request {request_id} expired undecided (it counts as rejected)",
                                decision, request)
        raise ApprovalNeeded(f"action request {request_id} still undecided after {self.wait:g}s: not acting "
                             "(if it is approved later, its grant expires unused)", decision, request)

    def _start_beating(self) -> None:
        if self.heartbeat is None:
            return
        stop = self._beating = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat):
                try:
                    self.last_beat = self.client.heartbeat(self.agent)
                except GovconClientError:  # a missed beat: the lease runs out on the server by itself
                    pass
        threading.Thread(target=beat, name="govcon-heartbeat", daemon=True).start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        if self._beating is not None:
            self._beating.set()
        status = "rolled_back" if self._rolled_back else ("failed" if exc_type is not None else "succeeded")
        assert self.grant_id is not None
        try:
            self.client.report(self.grant_id, self.command_type, status, service=self.service)
            self.outcome = status
        except GovconClientError as failure:
            if exc_type is None:  # the block succeeded; the agent must learn the outcome was not recorded
                raise OutcomeNotReported(f"{self.grant_id}: the outcome {status} was not reported ({failure}); "
                                         "the grant expires by itself") from failure
            if exc is not None:  # do not hide the block's own exception; say what else went wrong
                exc.add_note(f"govcon: the outcome {status} for {self.grant_id} was not reported: {failure}")
        return False
