"""Account administration shared by the admin pages and `socialcare users`: tokens and roles.

Both doors do the same checks and write the same audit entries, so what an admin may do does not
depend on whether they used the console or the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import ROLES, ApiToken, User
from models.base import utcnow
from service.audit import record


class AccountError(ValueError):
    """A refused change, with the reason to show."""


@dataclass
class TokenView:
    """What an admin may see of a token: never its value (only a hash is stored anyway)."""

    id: int
    user_id: int
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = None

    @property
    def last_used(self) -> str:
        """When it last authenticated, to the minute (it is recorded no more often), or "never"."""
        return f"{self.last_used_at:%Y-%m-%d %H:%M}" if self.last_used_at else "never"

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        return "expired" if self.expires_at and self.expires_at < utcnow() else "active"


def _view(t: ApiToken) -> TokenView:
    return TokenView(t.id, t.user_id, t.name, list(t.scopes or []), t.created_at, t.expires_at, t.revoked_at,
                     t.last_used_at)


async def tokens_of(session: AsyncSession, user_ids: list[int] | None = None) -> dict[int, list[TokenView]]:
    """Tokens per user id, newest first (revoked ones included, marked)."""
    q = select(ApiToken).order_by(ApiToken.user_id, ApiToken.id.desc())
    if user_ids is not None:
        q = q.where(ApiToken.user_id.in_(user_ids))
    out: dict[int, list[TokenView]] = {}
    for t in await session.scalars(q):
        out.setdefault(t.user_id, []).append(_view(t))
    return out


async def revoke_token(session: AsyncSession, token: ApiToken, actor: str) -> bool:
    """Revoke one token (audited); False when it already was."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    record(session, actor, "token.revoked", "user", token.user_id, token_id=token.id, name=token.name)
    return True


async def revoke_named(session: AsyncSession, user: User, name: str, actor: str) -> int:
    """Revoke every active token of ``user`` called ``name`` (names are not unique: a rotated bot
    token may share its predecessor's); returns how many."""
    rows = await session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.name == name,
                                                        ApiToken.revoked_at.is_(None)))
    return sum([await revoke_token(session, t, actor) for t in rows])


async def change_role(session: AsyncSession, user: User, role: str, actor: str) -> bool:
    """Give ``user`` another role (audited); False when it is already theirs. The last active admin
    keeps the role: without one nobody could manage users from the console again."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if user.role == role:
        return False
    if user.role == "admin":
        admins = await session.scalar(select(func.count()).select_from(User).where(
            User.role == "admin", User.active.is_(True), User.id != user.id))
        if not admins:
            raise AccountError(f"{user.username} is the last active admin; make someone else admin first")
    record(session, actor, "user.role_changed", "user", user.id, old=user.role, new=role)
    user.role = role
    return True
