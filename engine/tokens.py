"""Bearer tokens for the HTTP API: each maps to one operator, whose roles every request is checked against.

A token is shown once, when it is created; the store keeps only its SHA-256, so a copy of the database
gives nobody a working token. Creating and revoking need the admin role and are audited in the same
transaction. ``verify`` answers from a short cache (``cache_seconds``) so that a busy ingest client does
not cost a store read per request: a revoked token stops working within that time. When it reads the
store it also has the token's last use recorded (`govcon tokens list`: lastUsedAt), at most once per
``LAST_USED_EVERY`` and by a background thread, so a request never waits for a write (SQLite would make
it wait for any writer). That is bookkeeping, not a governance change: not audited, and not evidence.

A token may expire (``expires_in``; judged by the injected clock on every use, cached or not) and may be
bound to an agent (``agent``: the one agent its heartbeats may renew). ``identify`` answers both.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import queue
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine import access
from engine.audit_verify import token_fingerprint  # `audit verify` checks the stored secret with it
from engine.clock import Clock, isoformat
from engine.domain import ACTION_ROLES
from engine.errors import InvalidInput, NotFound
from engine.gate import invalid_name
from storage import audit, identity_repo
from storage.db import StoreUnavailable
from storage.store import Store

if TYPE_CHECKING:
    from sqlalchemy.engine import Row

log = logging.getLogger(__name__)

PREFIX = "gvc_"
DEFAULT_CACHE_SECONDS = 5.0
MAX_LENGTH = 512


class _Miss(enum.Enum):
    MISS = "miss"


#: what ``TokenBook.cached`` answers for a token it holds no fresh answer for
MISS = _Miss.MISS
LAST_USED_EVERY = timedelta(minutes=1)
#: the roles that may engage the kill switch: only their tokens are remembered for it (``TokenBook.last_known``)
ENGAGE_ROLES = frozenset(ACTION_ROLES["kill_switch.engage"])


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class NewToken:
    id: str
    operator: str
    secret: str
    expires_at: datetime | None = None
    agent: str | None = None

    def to_json(self) -> dict[str, Any]:
        """{id, operator, token}, and expiresAt / agent when the token has them."""
        doc: dict[str, Any] = {"id": self.id, "operator": self.operator, "token": self.secret}
        if self.expires_at is not None:
            doc["expiresAt"] = isoformat(self.expires_at)
        if self.agent is not None:
            doc["agent"] = self.agent
        return doc


@dataclass(frozen=True)
class TokenIdentity:
    """Who a live token speaks for: its operator, the agent it is bound to (None: none), when it expires."""
    operator: str
    agent: str | None
    expires_at: datetime | None
    token_id: str

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class TokenExpired(Exception):
    """A known, unrevoked token past its expiry (the API answers 401 saying when)."""

    def __init__(self, identity: TokenIdentity) -> None:
        super().__init__(f"the bearer token {identity.token_id} expired at {isoformat(identity.expires_at)}; "
                         "an admin creates a new one with `govcon tokens create USER`")
        self.identity = identity


def token_json(row: Row, now: datetime | None = None) -> dict[str, Any]:
    """A token as `tokens list` shows it: never the secret, never the hash."""
    expired = row.expires_at is not None and now is not None and now >= row.expires_at
    return {"id": row.id, "operator": row.operator, "createdAt": isoformat(row.created_at),
            "createdBy": row.created_by, "revokedAt": isoformat(row.revoked_at),
            "lastUsedAt": isoformat(row.last_used_at), "expiresAt": isoformat(row.expires_at),
            "agent": row.agent, "expired": expired, "active": row.revoked_at is None and not expired}


def _check_expires_in(expires_in: timedelta | None) -> timedelta | None:
    if expires_in is not None and (not isinstance(expires_in, timedelta) or expires_in <= timedelta(0)):
        raise InvalidInput(f"a token's expiry must be a positive duration (e.g. 30d), not {expires_in!r}")
    return expires_in


class TokenBook:
    def __init__(self, store: Store, clock: Clock, *, cache_seconds: float = DEFAULT_CACHE_SECONDS) -> None:
        self.store = store
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, TokenIdentity | None]] = {}  # hash -> (monotonic expiry, who)
        #: hash -> the identity the store last confirmed for a live token whose operator then held a role that
        #: may engage the kill switch (``last_known``), kept until a revocation in this process or a lookup that
        #: finds the token gone or the role revoked
        self._known: dict[str, TokenIdentity] = {}
        self._lock = threading.Lock()
        self._uses_noted: dict[str, datetime] = {}  # token id -> the last use handed to the writer
        self._uses: queue.SimpleQueue | None = None  # (token id, at) for the writer thread; an Event to drain

    def create(self, actor: str, operator: str, *, expires_in: timedelta | None = None,
               agent: str | None = None) -> NewToken:
        """A new token for ``operator``, expiring ``expires_in`` from now (None: never), bound to ``agent``."""
        access.check_operator_name(operator)
        _check_expires_in(expires_in)
        why = invalid_name(agent, "agent")
        if why is not None:
            raise InvalidInput(why)
        now = self.clock.now()
        try:
            expires_at = None if expires_in is None else now + expires_in
        except OverflowError:
            raise InvalidInput(f"a token's expiry of {expires_in} runs past the year 9999") from None
        new = NewToken("tok-" + secrets.token_hex(6), operator, PREFIX + secrets.token_urlsafe(32),
                       expires_at=expires_at, agent=agent)
        with self.store.write() as conn:
            access.require_role(conn, actor, "tokens.manage")
            identity_repo.add_token(conn, token_id=new.id, operator=operator, token_hash=token_hash(new.secret),
                                    by=actor, at=now, expires_at=expires_at, agent=agent)
            audit.append(conn, at=now, actor=actor, action="token.create", target=new.id,
                         details={"operator": operator, "expiresAt": isoformat(expires_at), "agent": agent,
                                  "fingerprint": token_fingerprint(token_hash(new.secret))})
        return new

    def revoke(self, actor: str, token_id: str) -> dict[str, Any]:
        now = self.clock.now()
        with self.store.write() as conn:
            access.require_role(conn, actor, "tokens.manage")
            rows = {r.id: r for r in identity_repo.list_tokens(conn)}
            row = rows.get(token_id)
            if row is None:
                raise NotFound(f"no token {token_id!r}; see `govcon tokens list`")
            if row.revoked_at is None:
                identity_repo.revoke_token(conn, token_id, now)
                audit.append(conn, at=now, actor=actor, action="token.revoke", target=token_id,
                             details={"operator": row.operator})
            revoked = {r.id: r for r in identity_repo.list_tokens(conn)}[token_id]
        self.forget()
        return token_json(revoked, now)

    def list(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        with self.store.read() as conn:
            return [token_json(r, now) for r in identity_repo.list_tokens(conn)]

    def cached(self, secret: str) -> TokenIdentity | None | _Miss:
        """The cached answer for a token (its TokenIdentity, expired or not, or None), else ``MISS``: lets an
        event loop answer without a store read and hand only the misses to a thread (``lookup``)."""
        if not secret or len(secret) > MAX_LENGTH:
            return None
        hit = self._cache.get(token_hash(secret))
        return MISS if hit is None or hit[0] <= time.monotonic() else hit[1]

    def remembers(self, digest: str) -> bool:
        """Whether the cache holds an identity for the token of this SHA-256 (``token_hash``), fresh or not. A
        revocation in this process empties the cache (``forget``): a caller keeping identities longer than
        this cache does (the heartbeat's) looks a token up again once this says False."""
        hit = self._cache.get(digest)
        return hit is not None and hit[1] is not None  # a cached "no such token" (revoked) is no memory of it

    def lookup(self, secret: str) -> TokenIdentity | None:
        """The identity of an unrevoked token, expired or not (callers judge expiry: ``identify`` does)."""
        if not secret or len(secret) > MAX_LENGTH:
            return None
        digest = token_hash(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self.store.read() as conn:
            row = identity_repo.token_by_hash(conn, digest)
            may_engage = row is not None and bool(identity_repo.roles_of(conn, row.operator) & ENGAGE_ROLES)
        ident = None if row is None else TokenIdentity(row.operator, row.agent, row.expires_at, row.id)
        if row is not None and ident is not None and not ident.expired(self.clock.now()):
            self._note_use(row)
        with self._lock:
            if len(self._cache) > 10_000:  # someone is guessing: do not let the cache grow without bound
                self._cache.clear()
            self._cache[digest] = (now + self.cache_seconds, ident)
            if ident is None or not may_engage:
                self._known.pop(digest, None)
            else:
                if len(self._known) > 10_000:
                    self._known.clear()
                self._known[digest] = ident
        return ident

    def last_known(self, secret: str) -> TokenIdentity | None:
        """The identity the store last confirmed for this token in this process, however long ago, if its
        operator then held a role that may engage the kill switch; else None. For one use only: engaging the
        kill switch while the store cannot be read (POST /api/kill-switch then engages by the marker file). A
        token revoked (or a role taken away) by another process meanwhile is still known here; engaging only
        ever stops autonomy, which is why nothing else may use this."""
        if not secret or len(secret) > MAX_LENGTH:
            return None
        with self._lock:
            return self._known.get(token_hash(secret))

    def verify_hashes(self, digests: Sequence[str],
                      used: frozenset[str] | set[str] = frozenset()) -> dict[str, TokenIdentity]:
        """The identities of the unrevoked tokens among ``digests`` (sha256 hashes), in one store read per
        500: what a cache of many tokens re-verifies at once (the heartbeats' fast path). The uses of the
        live ones among ``used`` are noted (at most once a minute per token, as ``lookup`` does)."""
        out: dict[str, TokenIdentity] = {}
        now = self.clock.now()
        for i in range(0, len(digests), 500):
            with self.store.read() as conn:
                rows = identity_repo.tokens_by_hashes(conn, list(digests[i:i + 500]))
            for row in rows:
                ident = TokenIdentity(row.operator, row.agent, row.expires_at, row.id)
                out[row.token_hash] = ident
                if row.token_hash in used and not ident.expired(now):
                    self._note_use(row)
        return out

    def identify(self, secret: str) -> TokenIdentity | None:
        """Who a live token speaks for, or None for an unknown, revoked or expired one."""
        ident = self.lookup(secret)
        return None if ident is None or ident.expired(self.clock.now()) else ident

    def check(self, ident: TokenIdentity | None) -> TokenIdentity | None:
        """``ident`` if live, None if unknown; raises TokenExpired (saying when) for an expired one."""
        if ident is not None and ident.expired(self.clock.now()):
            raise TokenExpired(ident)
        return ident

    def verify(self, secret: str) -> str | None:
        """The operator a live token belongs to, or None for an unknown, revoked or expired one."""
        ident = self.identify(secret)
        return ident.operator if ident is not None else None

    def _note_use(self, row: Row) -> None:
        at = self.clock.now()
        with self._lock:
            last = max((t for t in (row.last_used_at, self._uses_noted.get(row.id)) if t is not None), default=None)
            if last is not None and at - last < LAST_USED_EVERY:
                return
            self._uses_noted[row.id] = at
            if self._uses is None:
                self._uses = queue.SimpleQueue()
                threading.Thread(target=self._write_uses, args=(self._uses,), name="govcon-token-uses",
                                 daemon=True).start()
        self._uses.put((row.id, at))

    def _write_uses(self, uses: queue.SimpleQueue) -> None:
        """Writes the uses waiting, all of them in one transaction (1,000 agents' tokens come back every
        minute: one transaction each cost more CPU than their heartbeats)."""
        while True:
            items = [uses.get()]
            while True:
                try:
                    items.append(uses.get_nowait())
                except queue.Empty:
                    break
            latest: dict[str, datetime] = {}
            for item in items:
                if not isinstance(item, threading.Event):
                    token_id, at = item
                    latest[token_id] = max(at, latest.get(token_id, at))
            if latest:
                try:
                    with self.store.write(serialise=False) as conn:
                        identity_repo.touch_tokens(conn, list(latest.items()))
                except StoreUnavailable as exc:  # a read-only store: the tokens still work, their uses go unrecorded
                    log.debug("could not record the use of %d token(s): %s", len(latest), exc)
                except Exception as exc:
                    log.warning("could not record the use of %d token(s): %s", len(latest), exc)
            for item in items:  # drain() waits for the uses handed over before it: they are written now
                if isinstance(item, threading.Event):
                    item.set()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until the uses handed to the writer so far are written (tests; a clean shutdown)."""
        with self._lock:
            uses = self._uses
        if uses is None:
            return True
        done = threading.Event()
        uses.put(done)
        return done.wait(timeout)

    def forget(self) -> None:
        """Drop cached answers (after a revocation in this process)."""
        with self._lock:
            self._cache.clear()
            self._known.clear()
