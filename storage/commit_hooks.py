"""Run something once a transaction has really committed (log lines that report a state change).

SQLAlchemy Core has no after-commit event: ``ConnectionEvents.commit`` fires *before* the COMMIT is sent,
so a hook on it reports changes that a full disk, a deferred constraint or a lost connection then undo.
The one call that performs the COMMIT is the dialect's ``do_commit``; each engine's dialect is wrapped
once, and the callbacks of a connection run after that call returns. They are dropped when the
transaction rolls back, when the COMMIT fails, and at the next BEGIN on the same pooled connection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import PoolProxiedConnection

log = logging.getLogger("govcon.store")

_KEY = "govcon.after_commit"
_FLAG = "_govcon_after_commit_installed"
_install_lock = threading.Lock()


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Run ``callback()`` after the transaction of ``conn`` commits, never if it does not; at once when
    ``conn`` is not in a transaction. A callback that raises is logged, not raised."""
    if not conn.in_transaction():
        _run([callback])
        return
    install(conn.engine)  # normally done when the engine was made; a no-op then
    conn.info.setdefault(_KEY, []).append(callback)


def install(engine: Engine) -> None:
    """Wrap the engine's dialect once. ``create_db_engine`` calls it before the engine is shared: adding
    the BEGIN listener later, while another thread's BEGIN walks the listeners, fails that BEGIN with
    "deque mutated during iteration"."""
    dialect = engine.dialect
    if getattr(dialect, _FLAG, False):
        return
    with _install_lock:
        if getattr(dialect, _FLAG, False):
            return
        do_commit, do_rollback = dialect.do_commit, dialect.do_rollback

        def committing(dbapi_connection: PoolProxiedConnection) -> None:
            do_commit(dbapi_connection)  # raises when the COMMIT fails: the callbacks are not run
            _run(_take(dbapi_connection))

        def rolling_back(dbapi_connection: PoolProxiedConnection) -> None:
            _take(dbapi_connection)
            do_rollback(dbapi_connection)

        dialect.do_commit = committing  # type: ignore[method-assign]
        dialect.do_rollback = rolling_back  # type: ignore[method-assign]
        sa.event.listen(engine, "begin", lambda conn: conn.info.pop(_KEY, None))
        setattr(dialect, _FLAG, True)


def _take(dbapi_connection: PoolProxiedConnection) -> list[Callable[[], None]]:
    try:  # the pool's proxy shares the Connection's info
        info = dbapi_connection.info
    except (AttributeError, NotImplementedError):  # the ad-hoc proxy of the dialect's first connect
        return []
    return info.pop(_KEY, [])


def _run(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a log line must never break the commit it reports
            log.exception("an after-commit callback failed")
