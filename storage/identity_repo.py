"""Role grants and API tokens (tokens are stored as SHA-256 hashes, never in clear)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from storage.tables import api_tokens as TOKENS
from storage.tables import role_grants as GRANTS


def roles_of(conn: Connection, operator: str) -> set[str]:
    return set(conn.execute(sa.select(GRANTS.c.role).where(GRANTS.c.operator == operator)).scalars())


def holders_of(conn: Connection, roles: Sequence[str]) -> set[str]:
    """The operators holding any of ``roles`` (one statement)."""
    return set(conn.execute(sa.select(GRANTS.c.operator).where(GRANTS.c.role.in_(list(roles)))).scalars())


def all_grants(conn: Connection) -> Sequence[Row]:
    return conn.execute(sa.select(GRANTS).order_by(GRANTS.c.operator, GRANTS.c.role)).all()


def grant(conn: Connection, *, operator: str, role: str, by: str, at: datetime) -> bool:
    """Returns False when the operator already held the role."""
    if role in roles_of(conn, operator):
        return False
    conn.execute(sa.insert(GRANTS).values(operator=operator, role=role, granted_by=by, granted_at=at))
    return True


def revoke(conn: Connection, *, operator: str, role: str) -> bool:
    return conn.execute(sa.delete(GRANTS).where(GRANTS.c.operator == operator, GRANTS.c.role == role)
                        ).rowcount > 0


def count_admins(conn: Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(GRANTS).where(GRANTS.c.role == "admin")
                        ).scalar_one()


def add_token(conn: Connection, *, token_id: str, operator: str, token_hash: str, by: str,
              at: datetime, expires_at: datetime | None = None, agent: str | None = None) -> None:
    conn.execute(sa.insert(TOKENS).values(id=token_id, operator=operator, token_hash=token_hash,
                                          created_at=at, created_by=by, expires_at=expires_at, agent=agent))


def token_by_hash(conn: Connection, token_hash: str) -> Row | None:
    return conn.execute(sa.select(TOKENS).where(TOKENS.c.token_hash == token_hash,
                                                TOKENS.c.revoked_at.is_(None))).first()


def tokens_by_hashes(conn: Connection, token_hashes: list[str]) -> Sequence[Row]:
    """The unrevoked tokens among ``token_hashes`` (one statement)."""
    if not token_hashes:
        return []
    return conn.execute(sa.select(TOKENS).where(TOKENS.c.token_hash.in_(token_hashes),
                                                TOKENS.c.revoked_at.is_(None))).all()


def list_tokens(conn: Connection) -> Sequence[Row]:
    return conn.execute(sa.select(TOKENS).order_by(TOKENS.c.created_at)).all()


def touch_token(conn: Connection, token_id: str, at: datetime) -> None:
    """Record a use of the token (never moving lastUsedAt backwards)."""
    conn.execute(sa.update(TOKENS).where(TOKENS.c.id == token_id,
                                         sa.or_(TOKENS.c.last_used_at.is_(None), TOKENS.c.last_used_at < at))
                 .values(last_used_at=at))


_TOUCH = sa.update(TOKENS).where(
    TOKENS.c.id == sa.bindparam("t_id"),
    sa.or_(TOKENS.c.last_used_at.is_(None), TOKENS.c.last_used_at < sa.bindparam("t_at"))).values(
    last_used_at=sa.bindparam("t_at"))


def touch_tokens(conn: Connection, uses: list[tuple[str, datetime]]) -> None:
    """Record many tokens' uses in one statement (executemany; never moving lastUsedAt backwards)."""
    if uses:
        conn.execute(_TOUCH, [{"t_id": token_id, "t_at": at} for token_id, at in uses])


def revoke_token(conn: Connection, token_id: str, at: datetime) -> bool:
    return conn.execute(sa.update(TOKENS).where(TOKENS.c.id == token_id, TOKENS.c.revoked_at.is_(None))
                        .values(revoked_at=at)).rowcount > 0
