"""Who may do what: role checks against the store, and role administration (audited)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from engine.domain import ACTION_DESCRIPTIONS, ACTION_ROLES, AGENT_ROLE, ROLES
from engine.errors import InvalidInput, PermissionDenied
from storage import audit, identity_repo


def require_role(conn: Connection, actor: str, action: str) -> set[str]:
    """Raise PermissionDenied naming the roles the action needs; return the actor's roles."""
    held = identity_repo.roles_of(conn, actor)
    allowed = ACTION_ROLES[action]
    if not held.intersection(allowed):
        what = ACTION_DESCRIPTIONS.get(action, action)
        if len(allowed) == 1:
            needs = f"the role {allowed[0]}"
        elif set(allowed) == set(ROLES):
            needs = "a role (any of " + ", ".join(allowed) + ")"
        else:
            needs = "one of the roles " + ", ".join(allowed)
        holds = ", ".join(sorted(held)) if held else "no role"
        least = AGENT_ROLE if AGENT_ROLE in allowed else allowed[0]  # an agent needs no governance power
        raise PermissionDenied(f"{what} needs {needs}; {actor} holds {holds}. "
                               f"An admin can grant it: govcon roles grant {actor} {least}")
    return held


def check_role_name(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role


def grant(conn: Connection, *, actor: str, operator: str, role: str, at: datetime) -> bool:
    require_role(conn, actor, "roles.manage")
    check_role_name(role)
    check_operator_name(operator)
    changed = identity_repo.grant(conn, operator=operator, role=role, by=actor, at=at)
    if changed:
        audit.append(conn, at=at, actor=actor, action="role.grant", target=operator, details={"role": role})
    return changed


def revoke(conn: Connection, *, actor: str, operator: str, role: str, at: datetime) -> bool:
    require_role(conn, actor, "roles.manage")
    check_role_name(role)
    if role == "admin" and identity_repo.count_admins(conn) <= 1 and "admin" in identity_repo.roles_of(conn, operator):
        raise InvalidInput(f"{operator} is the store's last admin: grant admin to someone else first")
    changed = identity_repo.revoke(conn, operator=operator, role=role)
    if changed:
        audit.append(conn, at=at, actor=actor, action="role.revoke", target=operator, details={"role": role})
    return changed


def check_operator_name(name: str) -> None:
    if not name or len(name) > 200 or any(c.isspace() for c in name):
        raise InvalidInput(f"operator name {name!r} must be a non-empty word without spaces")
