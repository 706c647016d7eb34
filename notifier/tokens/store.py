"""The daemon's own tokens: create (secret shown once, hash stored), list, get, revoke."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError

from notifier.clock import Clock
from notifier.db.database import Database
from notifier.db.models import Token
from notifier.ids import short_id
from notifier.policy import Policy, WatchedToken, days_left
from notifier.resources import CreatedToken, TokenResource, TokenStatus
from notifier.tokens.secrets import generate_secret, hash_secret

NAME_MAX = 200
ROLE_MAX = 100
_ID_ATTEMPTS = 3

log = structlog.get_logger("notifier.tokens")
_tokens = Token.__table__


class TokenNotFoundError(LookupError):
    """No token has the given id."""


class TokenInputError(ValueError):
    """A token field was refused; the message says which and why."""


class TokenStore:
    """Create, read and revoke the tokens stored in the database."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        policy: Policy,
        *,
        prefix: str,
        pepper: str | None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._policy = policy
        self._prefix = prefix
        self._pepper = pepper

    def create(
        self, *, name: str, expires_at: datetime | None, role: str | None = None
    ) -> CreatedToken:
        """Store a new token and return it with its secret, which is never shown again."""
        now = self._clock.now()
        name = name.strip()
        if not name:
            raise TokenInputError("name: must not be empty")
        if len(name) > NAME_MAX:
            raise TokenInputError(f"name: longer than {NAME_MAX} characters")
        if role is not None and (not role.strip() or len(role) > ROLE_MAX):
            raise TokenInputError(f"role: must be 1-{ROLE_MAX} characters")
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise TokenInputError("expires_at: needs a timezone (e.g. Z or +02:00)")
            if expires_at <= now:
                raise TokenInputError(f"expires_at: {expires_at.isoformat()} is not in the future")
        secret = generate_secret(self._prefix)
        for attempt in range(_ID_ATTEMPTS):
            token_id = short_id()
            try:
                with self._database.write() as connection:
                    connection.execute(
                        _tokens.insert().values(
                            id=token_id,
                            name=name,
                            role=role,
                            secret_hash=hash_secret(secret, self._pepper),
                            created_at=now,
                            expires_at=expires_at,
                            revoked_at=None,
                        )
                    )
                break
            except IntegrityError:  # pragma: no cover - a 60-bit id collision
                if attempt == _ID_ATTEMPTS - 1:
                    raise
        log.info("token.created", token_id=token_id, name=name, expires_at=expires_at)
        resource = self.get(token_id)
        return CreatedToken(**resource.model_dump(), token=secret)

    def list(self, *, include_revoked: bool = False) -> list[TokenResource]:
        """Return the tokens, soonest expiry first; revoked ones only when asked."""
        now = self._clock.now()
        query = select(_tokens).order_by(
            _tokens.c.expires_at.is_(None), _tokens.c.expires_at, _tokens.c.name, _tokens.c.id
        )
        if not include_revoked:
            query = query.where((_tokens.c.revoked_at.is_(None)) | (_tokens.c.revoked_at > now))
        with self._database.read() as connection:
            rows = connection.execute(query).all()
        return [self._resource(row, now) for row in rows]

    def get(self, token_id: str) -> TokenResource:
        """Return one token, or raise :class:`TokenNotFoundError`."""
        with self._database.read() as connection:
            row = connection.execute(select(_tokens).where(_tokens.c.id == token_id)).first()
        if row is None:
            raise TokenNotFoundError(f"no token with id {token_id!r}")
        return self._resource(row, self._clock.now())

    def revoke(self, token_id: str) -> TokenResource:
        """Revoke a token now; revoking a revoked token changes nothing."""
        now = self._clock.now()
        with self._database.write() as connection:
            result = connection.execute(
                update(_tokens)
                .where(_tokens.c.id == token_id)
                .where((_tokens.c.revoked_at.is_(None)) | (_tokens.c.revoked_at > now))
                .values(revoked_at=now)
            )
        resource = self.get(token_id)
        if result.rowcount:
            log.info("token.revoked", token_id=token_id)
        return resource

    def _resource(self, row: Row[tuple[object, ...]], now: datetime) -> TokenResource:
        mapping = row._mapping  # noqa: SLF001 - SQLAlchemy's public row mapping accessor
        token = WatchedToken(
            source="store",
            token_id=mapping["id"],
            name=mapping["name"],
            expires_at=mapping["expires_at"],
            revoked_at=mapping["revoked_at"],
        )
        return TokenResource(
            id=token.token_id,
            name=token.name,
            role=mapping["role"],
            created_at=mapping["created_at"],
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
            status=self._status(token, now),
            days_left=(
                days_left(token.expires_at, now, self._policy.log_slice)
                if token.expires_at is not None and token.expires_at > now
                else None
            ),
        )

    def _status(self, token: WatchedToken, now: datetime) -> TokenStatus:
        if token.revoked_at is not None and token.revoked_at <= now:
            return "revoked"
        if token.expires_at is not None and token.expires_at <= now:
            return "expired"
        if self._policy.is_expiring(token, now):
            return "expiring"
        return "active"
