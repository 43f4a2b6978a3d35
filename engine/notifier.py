"""The notifier: alerts into the outbox inside the transaction that raised them, out to the sinks later.

Writing into the outbox costs one insert in the caller's transaction, so a sink that is down or slow
never blocks evaluation; and an alert exists exactly when the state change it reports committed.
Delivery claims one due row at a time (a short write), sends it with no transaction open, then marks
it (another short write): sent on 2xx; retried with exponential backoff (or the sink's longer
Retry-After) on connection errors, timeouts, 5xx, 429, 408 and 425; dead on any other 4xx or after
``max_attempts``, and logged at ERROR.

Delivery is **at least once**: a sink that answers after our timeout, or a crash between sending and
marking, gets the same row again. Every attempt carries the same ``Idempotency-Key`` header (the row's
id and dedup key) and the payload's dedup key, so a sink (PagerDuty by its dedup_key) folds repeats.
A request that timed out most likely reached the sink, so the next attempt waits at least twice the
timeout (the sink has finished with the first by then) and allows a longer answer (the timeout doubles
per timed-out attempt, up to ``TIMEOUT_GROWTH`` times the configured one): one slow answer is one
repeat, not one per backoff step.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.engine import Connection, Row

    from storage.store import Store


from engine.alerts import (
    KILL_SWITCH_DEDUP_KEY,
    PASSWORD_ENV_PREFIX,
    Alert,
    SinkConfig,
    format_payload,
    is_report,
    log_level,
    password_env_allowed,
    route,
    stored_sink,
)
from engine.clock import Clock, isoformat
from engine.redact import RedactingFilter, redact, redact_obj
from storage import outbox_repo, sinks_repo
from storage.commit_hooks import after_commit

log = logging.getLogger("govcon.alerts")
log.addFilter(RedactingFilter())
log.addHandler(logging.NullHandler())  # a library's logger: the application's handlers decide where lines go

FOLDED_NOTE = "(folded into the kill-switch alert: the kill switch is engaged, so this does not page again)"
#: how long past a sink's timeout a claimed row stays invisible to other deliverers
LEASE_MARGIN = timedelta(seconds=30)
_RETRYABLE_4XX = frozenset({408, 425, 429})
#: a sink that timed out gets up to this many times its configured timeout on the next attempts
TIMEOUT_GROWTH = 4
TIMED_OUT = "timed out after"


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    dead: int = 0


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    retryable: bool = True
    error: str = ""
    retry_after: float | None = None
    timed_out: bool = False


class Notifier:
    """``sinks``: None (every facade built for a store) routes and delivers with the store's sinks
    (storage/sinks_repo.py), read in the transaction that raises the alert and at each delivery run, so
    that what the local config says never decides; a list fixes them (tests)."""

    def __init__(self, store: Store, clock: Clock, sinks: list[SinkConfig] | None, *,
                 client: httpx.Client | None = None, max_attempts: int = 12, base_backoff: float = 5.0,
                 max_backoff: float = 600.0, fallback: list[SinkConfig] | None = None) -> None:
        if sinks is not None:
            names = [s.name for s in sinks]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"alert sink names must be unique: {', '.join(duplicates)} is used twice")
        if max_attempts < 1 or base_backoff < 0 or max_backoff < base_backoff:
            raise ValueError("need max_attempts >= 1 and 0 <= base_backoff <= max_backoff")
        self.store = store
        self.clock = clock
        self._fixed = None if sinks is None else list(sinks)
        #: while the store has no sinks of its own (sinks_version 0: a store from before revision 0019 that has
        #: not run `govcon db import-config`), the config file's, as before
        self._fallback = list(fallback or [])
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self._owns_client = client is None
        self._client = client  # made on first delivery: most processes never send (only the leader does)

    @property
    def sinks(self) -> list[SinkConfig]:
        """The sinks alerts are routed to now (the store's, unless fixed)."""
        if self._fixed is not None:
            return list(self._fixed)
        with self.store.read() as conn:
            return self.sinks_in(conn)

    def sinks_in(self, conn: Connection) -> list[SinkConfig]:
        """The sinks as of ``conn``. A stored sink that does not validate (edited behind govcon's back) is
        left out and logged, never raised: an alert (the kill switch's above all) must not fail for it."""
        if self._fixed is not None:
            return list(self._fixed)
        if not sinks_repo.version(conn):
            return list(self._fallback)
        out = []
        for row in sinks_repo.all_sinks(conn):
            try:
                out.append(stored_sink(row.name, row.kind, row.settings, row.secret))
            except Exception as exc:
                log.error("alert sink %r in the store is not valid and is skipped: %s", row.name, redact(str(exc)))
        return out

    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx  # imported when first needed: it costs every CLI call ~40 ms otherwise
            self._client = httpx.Client(follow_redirects=False, headers={"User-Agent": "govcon-notifier"})
        return self._client

    # --- into the outbox ------------------------------------------------------------------------

    def enqueue(self, conn: Connection, alert: Alert, kill_switch_engaged: bool = False) -> int:
        """Queue ``alert`` for its sinks inside the caller's write transaction; returns the rows added.

        While the kill switch is engaged, a trigger other than the kill switch's own is folded into
        the kill-switch page: pager sinks are skipped, chat and webhooks still hear of it.
        """
        alert = redact_alert(alert)
        targets = route(self.sinks_in(conn), alert)
        folded = kill_switch_engaged and alert.kind == "trigger" and alert.dedup_key != KILL_SWITCH_DEDUP_KEY
        if folded:
            targets = [s for s in targets if s.type != "pagerduty"]
            alert = replace(alert, body=f"{alert.body}\n{FOLDED_NOTE}",
                            details={**alert.details, "folded_into": KILL_SWITCH_DEDUP_KEY})
        now = self.clock.now()
        title = " ".join(alert.title.split())[:300]
        rows = [{"created_at": now, "sink": sink.name, "severity": alert.severity, "kind": alert.kind, "title": title,
                 "dedup_key": alert.dedup_key, "payload": stored_payload(sink, alert), "next_attempt_at": now}
                for sink in targets]
        added = outbox_repo.insert_many(conn, rows)
        after_commit(conn, lambda: _log_alert(alert, [s.name for s in targets], folded))
        return added

    # --- out to the sinks -----------------------------------------------------------------------

    def deliver_due(self, *, limit: int = 100) -> DeliveryReport:
        """Send the rows that are due, oldest first. Sink failures are recorded, never raised."""
        report = DeliveryReport()
        with self.store.read() as conn:
            rows = outbox_repo.due(conn, self.clock.now(), limit=limit)
            by_name = {s.name: s for s in self.sinks_in(conn)} if rows else {}
        for row in rows:
            sink = by_name.get(row.sink)
            if sink is None:
                self._dead(row, row.attempts, f"sink {row.sink!r} is not in the store's alert sinks any more "
                                              "(`govcon alerts sinks list`)" if self._fixed is None else
                           f"sink {row.sink!r} is not configured any more")
                report.dead += 1
                continue
            now = self.clock.now()
            timeout = self.attempt_timeout(sink, row)
            with self.store.write(serialise=False) as conn:
                claimed = outbox_repo.claim(conn, row.id, now, now + timedelta(seconds=timeout) + LEASE_MARGIN)
            if not claimed:
                continue  # another deliverer has it
            outcome = self._send(sink, row.payload, timeout=timeout, key=idempotency_key(row.id, row.dedup_key))
            attempts = row.attempts + 1
            if outcome.ok:
                with self.store.write(serialise=False) as conn:
                    outbox_repo.mark_sent(conn, row.id, sent_at=self.clock.now(), attempts=attempts)
                log.info("alert %s (%s) delivered to %s", row.dedup_key, row.kind, sink.name)
                report.sent += 1
            elif not outcome.retryable or attempts >= self.max_attempts:
                why = outcome.error if not outcome.retryable else \
                    f"{outcome.error} (gave up after {attempts} attempts)"
                self._dead(row, attempts, why)
                report.dead += 1
            else:
                delay = self.backoff(row.attempts)
                if outcome.retry_after is not None:
                    delay = max(delay, min(outcome.retry_after, self.max_backoff))
                if outcome.timed_out:  # the sink may still be working on it: let it finish first
                    delay = max(delay, 2 * timeout)
                due_at = self.clock.now() + timedelta(seconds=delay)
                with self.store.write(serialise=False) as conn:
                    outbox_repo.mark_retry(conn, row.id, attempts=attempts, next_attempt_at=due_at,
                                           error=redact(outcome.error))
                log.warning("alert %s (%s) to %s failed (attempt %d of %d), retrying in %gs: %s",
                            row.dedup_key, row.kind, sink.name, attempts, self.max_attempts, delay, outcome.error)
                report.failed += 1
        return report

    def backoff(self, failures_before: int) -> float:
        """Seconds to wait after a failure when ``failures_before`` attempts had failed already."""
        return min(self.max_backoff, self.base_backoff * 2 ** min(failures_before, 62))

    def attempt_timeout(self, sink: SinkConfig, row: Row) -> float:
        """The sink's timeout, doubled for each attempt that timed out before (up to TIMEOUT_GROWTH times)."""
        if not (row.last_error or "").startswith(TIMED_OUT):
            return sink.timeout
        return sink.timeout * min(TIMEOUT_GROWTH, 2 ** min(row.attempts, 8))

    def pending_count(self) -> int:
        with self.store.read() as conn:
            return outbox_repo.count(conn, status="pending")

    def _send(self, sink: SinkConfig, stored: dict, *, timeout: float, key: str) -> _Outcome:
        if sink.type == "smtp":
            return send_mail(sink, stored, timeout=timeout, key=key)
        payload = dict(stored)
        if sink.type == "pagerduty":  # the key lives with the sink, never in the outbox row
            payload = {"routing_key": sink.routing_key, **payload}
        import httpx
        try:
            response = self._http().post(sink.url, json=payload, timeout=timeout,
                                         headers={"Idempotency-Key": key})
        except httpx.TimeoutException as exc:
            return _Outcome(False, error=f"{TIMED_OUT} {timeout:g}s ({type(exc).__name__})", timed_out=True)
        except httpx.HTTPError as exc:
            return _Outcome(False, error=redact(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # an invalid URL and the like: recorded, retried, dead-lettered in the end
            return _Outcome(False, error=redact(f"{type(exc).__name__}: {exc}"))
        status = response.status_code
        if 200 <= status < 300:
            return _Outcome(True)
        detail = " ".join(response.text.split())[:200]
        error = redact(f"HTTP {status} from {sink.type} sink {sink.name!r}" + (f": {detail}" if detail else ""))
        retryable = status >= 500 or status < 400 or status in _RETRYABLE_4XX
        return _Outcome(False, retryable=retryable, error=error,
                        retry_after=_retry_after(response.headers.get("retry-after")))

    def _dead(self, row: Row, attempts: int, error: str) -> None:
        error = redact(error)
        with self.store.write(serialise=False) as conn:
            outbox_repo.mark_dead(conn, row.id, attempts=attempts, error=error)
        log.error("alert %s (%s, %s) to %s is dead-lettered and will not be sent: %s",
                  row.dedup_key, row.kind, row.severity, row.sink, error)

    def close(self) -> None:
        if self._owns_client:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_mail(sink: SinkConfig, stored: dict, *, timeout: float, key: str) -> _Outcome:
    """One attempt to mail ``stored`` (the outbox row's payload) through the sink's server.

    STARTTLS is required on smtp:// (a server that does not offer it is refused, so neither the
    credentials nor the report travel in clear); smtps:// is TLS from the start. The Message-ID is made
    from the idempotency key, so a retried attempt is the same message to the receiving side. Every
    refusal is retried through the outbox and dead-lettered after the last attempt."""
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import formatdate

    parts = urlsplit(sink.url)
    tls = parts.scheme == "smtps"
    port = parts.port or (465 if tls else 587)
    host = parts.hostname
    if not host:
        return _Outcome(False, retryable=False, error=f"smtp sink {sink.name!r}: its url names no host")
    password = ""
    if sink.username:
        if not password_env_allowed(sink.password_env):  # a sink stored before the rule: never read it
            return _Outcome(False, retryable=False, error=f"smtp sink {sink.name!r}: password_env {sink.password_env} "
                                                          f"is not a {PASSWORD_ENV_PREFIX}… variable; set it again")
        password = os.environ.get(sink.password_env or "", "")
        if not password:
            return _Outcome(False, retryable=False, error=f"smtp sink {sink.name!r}: the environment variable "
                                                          f"{sink.password_env} holding its password is not set")
    message = EmailMessage()
    message["Subject"] = stored.get("subject", "")
    message["From"] = stored.get("from") or sink.mail_from
    message["To"] = ", ".join(stored.get("to") or sink.mail_to)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{key}@govcon>"
    message.set_content(stored.get("text", ""))
    if stored.get("html"):
        message.add_alternative(stored["html"], subtype="html")
    context = ssl.create_default_context(cafile=sink.ca_file)
    try:
        if tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            client.ehlo()
            if not tls:
                if not client.has_extn("starttls"):
                    return _Outcome(False, error=f"smtp sink {sink.name!r}: {host}:{port} does not offer "
                                                 "STARTTLS; refusing to send in clear")
                client.starttls(context=context)
                client.ehlo()
            if sink.username:
                client.login(sink.username, password)
            client.send_message(message)
    except TimeoutError as exc:
        return _Outcome(False, error=f"{TIMED_OUT} {timeout:g}s ({type(exc).__name__})", timed_out=True)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        text = redact(f"{type(exc).__name__}: {exc}")
        if password:
            text = text.replace(password, "[REDACTED]")
        return _Outcome(False, error=f"smtp sink {sink.name!r}: {text}"[:500])
    return _Outcome(True)


def idempotency_key(row_id: int, dedup_key: str) -> str:
    """The ``Idempotency-Key`` of every attempt of one outbox row: stable, and a valid header value."""
    return f"govcon-{row_id}-{quote(dedup_key, safe='-._~:')}"


def redact_alert(alert: Alert) -> Alert:
    """The alert with secrets removed from every field people will read."""
    return replace(alert, title=redact(alert.title), body=redact(alert.body), dedup_key=redact(alert.dedup_key),
                   details=_json_safe(redact_obj(alert.details)))


def stored_payload(sink: SinkConfig, alert: Alert) -> dict:
    """The payload as the outbox keeps it: redacted, JSON-safe, without the sink's routing key."""
    payload = format_payload(sink, alert)
    payload.pop("routing_key", None)
    return _json_safe(redact_obj(payload))


def _json_safe(obj: Any) -> Any:
    """A copy that any JSON column takes (PostgreSQL refuses NaN and infinities; times become ISO text)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [_json_safe(v) for v in items]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, datetime):
        return isoformat(obj) if obj.tzinfo else obj.isoformat()
    return str(obj)


def _retry_after(header: str | None) -> float | None:
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        return None  # the HTTP-date form: our own backoff is good enough
    return seconds if seconds >= 0 else None


def _log_alert(alert: Alert, sinks: list[str], folded: bool) -> None:
    if is_report(alert):  # the whole report is not a log line
        alert = replace(alert, body=f"(the report, {len(alert.body):,} characters of Markdown)")
    details = json.dumps(alert.details, sort_keys=True, default=str) if alert.details else ""
    log.log(log_level(alert), "alert %s %s: %s | %s%s | dedup_key=%s | sinks=%s%s",
            alert.kind, alert.severity, alert.title, " ".join(alert.body.split()),
            f" | details={details}" if details else "", alert.dedup_key, ",".join(sinks) or "log only",
            " | folded into the kill-switch alert" if folded else "")
