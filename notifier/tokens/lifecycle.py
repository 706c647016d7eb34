"""The daemon's own tokens: create, list, get, revoke, rotate, delete, verify.

The plaintext secret exists only in the return value of :meth:`TokenStore.create` and
:meth:`TokenStore.rotate`; the table keeps its hash. Every change writes an audit event in the
same transaction. Imports and exports are :mod:`notifier.tokens.transfer`'s, how a token is
shown :mod:`notifier.tokens.views`'s.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, RowMapping, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from notifier import audit
from notifier.core.clock import Clock
from notifier.core.ids import short_id
from notifier.core.policy import Policy
from notifier.db.database import Database
from notifier.db.models import Notification, Token
from notifier.delivery.ledger import history as ledger_history
from notifier.resources import CreatedToken, TokenResource, VerifiedToken
from notifier.tokens import transfer
from notifier.tokens.fields import TokenFields, TokenInputError, check_fields, rotated_expiry
from notifier.tokens.listing import (
    DEFAULT_STATUSES,
    STATUSES,
    TokenFilter,
    TokenLists,
)
from notifier.tokens.secrets import (
    checksum_ok,
    fingerprint,
    generate_secret,
    has_our_shape,
    hash_secret,
)
from notifier.tokens.transfer import ImportRecord, ImportReport
from notifier.tokens.views import STORE, iso, token_resource

_ID_ATTEMPTS = 3

log = structlog.get_logger("notifier.tokens")
_tokens = Token.__table__


class TokenNotFoundError(LookupError):
    """No token has the given id."""


class TokenStateError(ValueError):
    """The token cannot undergo the operation in its present state (rotate a revoked one)."""


@dataclass(frozen=True, slots=True)
class Revocation:
    """What :meth:`TokenStore.revoke_once` did."""

    token: TokenResource
    already_revoked: bool  # True: it was revoked before (token.revoked_at says when)


def _forget_history(connection: Connection, token_ids: Sequence[str]) -> None:
    """Delete the delivery state (through the ledger) and UI notifications of *token_ids*.

    A deleted token's rows would otherwise outlive it.
    """
    ledger_history.forget(connection, STORE, token_ids)
    notifications = Notification.__table__
    connection.execute(
        delete(notifications).where(
            notifications.c.source == STORE, notifications.c.token_id.in_(list(token_ids))
        )
    )


@dataclass(frozen=True, slots=True)
class TokenStore:
    """The token lifecycle over the database."""

    database: Database
    clock: Clock
    policy: Policy
    _: KW_ONLY
    prefix: str  # of new secrets (NOTIFIER_TOKEN_PREFIX)
    pepper: str | None  # the HMAC key of the hashes (NOTIFIER_TOKEN_PEPPER); None: SHA-256
    max_lifetime: timedelta | None = None  # NOTIFIER_TOKEN_MAX_LIFETIME; None: only the century

    @contextmanager
    def _changing(self, now: datetime, actor: str) -> Iterator[audit.Change]:
        with self.database.write() as connection:
            yield audit.Change(connection, now, actor)

    # --- create and read --------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        expires_at: datetime | None,
        role: str | None = None,
        permissions: Sequence[str] = (),
        owner: str | None = None,
        labels: dict[str, str] | None = None,
        description: str | None = None,
        actor: str = "system",
        not_after: datetime | None = None,
    ) -> CreatedToken:
        """Store a new token and return it with its secret, which is never shown again.

        *not_after* is the expiry of the token that asks (HTTP API): the new one may not
        outlive it. The operator (CLI, bootstrap key) passes None.
        """
        now = self.clock.now()
        fields = check_fields(
            TokenFields(
                name=name,
                expires_at=expires_at,
                role=role,
                permissions=tuple(permissions),
                owner=owner,
                labels=labels or {},
                description=description,
            ),
            now=now,
            max_lifetime=self.max_lifetime,
            not_after=not_after,
        )
        with self._changing(now, actor) as change:
            token_id, secret = self._insert(change.connection, fields, now, rotated_from=None)
            change.audit("create", token_id, fields.name)
        log.info("token.created", token_id=token_id, name=fields.name, expires_at=expires_at)
        return CreatedToken(**self.get(token_id).model_dump(), token=secret)

    def _insert(
        self,
        connection: Connection,
        fields: TokenFields,
        now: datetime,
        *,
        rotated_from: str | None,
    ) -> tuple[str, str]:
        secret = generate_secret(self.prefix)
        for attempt in range(_ID_ATTEMPTS):
            token_id = short_id()
            try:
                with connection.begin_nested():
                    connection.execute(
                        _tokens.insert().values(
                            id=token_id,
                            name=fields.name,
                            role=fields.role,
                            permissions=list(fields.permissions),
                            owner=fields.owner,
                            labels=dict(fields.labels),
                            description=fields.description,
                            secret_hash=hash_secret(secret, self.pepper),
                            created_at=now,
                            expires_at=fields.expires_at,
                            rotated_from=rotated_from,
                        )
                    )
            except IntegrityError:  # pragma: no cover - a 60-bit id collision
                if attempt == _ID_ATTEMPTS - 1:
                    raise
            else:
                return token_id, secret
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def lists(self) -> TokenLists:
        """Pages, streams and counts of the tokens (:mod:`notifier.tokens.listing`)."""
        return TokenLists(self.database, self.policy)

    def page(
        self,
        wanted: TokenFilter,
        *,
        sort: str = "expires_at",
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[TokenResource], str | None]:
        """One page of the tokens *wanted* holds, as they stand now, and the next cursor."""
        return self.lists.page(wanted, now=self.clock.now(), sort=sort, limit=limit, cursor=cursor)

    def stream(
        self, wanted: TokenFilter, *, sort: str = "expires_at", limit: int | None = None
    ) -> Iterator[TokenResource]:
        """Every token *wanted* holds (at most *limit*), read a page at a time."""
        return self.lists.stream(wanted, now=self.clock.now(), sort=sort, limit=limit)

    def summary(self, wanted: TokenFilter) -> dict[str, Any]:
        """Counts by status and expiries per day, now (:meth:`TokenLists.summary`)."""
        return self.lists.summary(wanted, now=self.clock.now())

    def list(
        self,
        *,
        include_revoked: bool = False,
        only_revoked: bool = False,
        expiring_within: timedelta | None = None,
    ) -> list[TokenResource]:
        """Every token, soonest expiry first: by default those not revoked (small lists).

        *expiring_within* keeps those that expire within that time from now (not yet expired).
        A list of a fleet's tokens pages (:meth:`page`) or streams (:meth:`stream`).
        """
        statuses = DEFAULT_STATUSES
        if only_revoked:
            statuses = frozenset({"revoked"})
        elif include_revoked:
            statuses = frozenset(STATUSES)
        return list(self.stream(TokenFilter(statuses, expiring_within=expiring_within)))

    def get(self, token_id: str) -> TokenResource:
        """Return one token, or raise :class:`TokenNotFoundError`."""
        with self.database.read() as connection:
            row = self._row(connection, token_id)
        return token_resource(row, self.clock.now(), self.policy)

    def _row(self, connection: Connection, token_id: str) -> RowMapping:
        row = connection.execute(select(_tokens).where(_tokens.c.id == token_id)).mappings().first()
        if row is None:
            raise TokenNotFoundError(f"no token with id {token_id!r}")
        return row

    # --- changes ----------------------------------------------------------------------------

    def revoke(self, token_id: str, *, actor: str = "system") -> TokenResource:
        """Revoke a token now; revoking a revoked token changes nothing."""
        return self.revoke_once(token_id, actor=actor).token

    def revoke_once(self, token_id: str, *, actor: str = "system") -> Revocation:
        """Revoke a token now, unless it already was: say which, with the token as it is now.

        A token in a rotation's grace period (revoked at a future time) is revoked now.
        """
        now = self.clock.now()
        with self._changing(now, actor) as change:
            row = self._row(change.connection, token_id)
            already = row["revoked_at"] is not None and row["revoked_at"] <= now
            if not already:
                change.connection.execute(
                    update(_tokens).where(_tokens.c.id == token_id).values(revoked_at=now)
                )
                change.audit("revoke", token_id, row["name"])
                log.info("token.revoked", token_id=token_id)
        return Revocation(token=self.get(token_id), already_revoked=already)

    def rotate(
        self,
        token_id: str,
        *,
        grace: timedelta = timedelta(0),
        expires_at: datetime | None = None,
        ttl: timedelta | None = None,
        actor: str = "system",
        not_after: datetime | None = None,
    ) -> CreatedToken:
        """Issue a new secret with the same name, role, scopes, owner and labels.

        The old token is revoked now, or when *grace* has passed; meanwhile it still
        authenticates but gets no expiry notices. The new token expires at *expires_at*, or
        after *ttl*, or else after the old token's own lifetime (never, if it never expired).
        *not_after*, as for :meth:`create`, bounds the new expiry by the asking token's own.
        """
        now = self.clock.now()
        if grace < timedelta(0):
            raise TokenInputError("grace: must not be negative")
        with self._changing(now, actor) as change:
            connection = change.connection
            old = self._row(connection, token_id)
            if old["revoked_at"] is not None and old["revoked_at"] <= now:
                raise TokenStateError(f"token {token_id!r} is revoked; create a new one instead")
            if old["superseded_by"] is not None:
                raise TokenStateError(
                    f"token {token_id!r} was already rotated into {old['superseded_by']!r}"
                )
            expiry, created = old["expires_at"], old["created_at"]
            old_lifetime = None if expiry is None else expiry - created
            fields = check_fields(
                TokenFields(
                    name=old["name"],
                    expires_at=rotated_expiry(
                        now, expires_at=expires_at, ttl=ttl, old_lifetime=old_lifetime
                    ),
                    role=old["role"],
                    permissions=tuple(old["permissions"] or ()),
                    owner=old["owner"],
                    labels=old["labels"] or {},
                    description=old["description"],
                ),
                now=now,
                max_lifetime=self.max_lifetime,
                not_after=not_after,
            )
            new_id, secret = self._insert(connection, fields, now, rotated_from=token_id)
            connection.execute(
                update(_tokens)
                .where(_tokens.c.id == token_id)
                .values(superseded_by=new_id, revoked_at=now + grace)
            )
            details = {"new_token_id": new_id, "grace_seconds": int(grace.total_seconds())}
            change.audit("rotate", token_id, old["name"], details)
            change.audit("create", new_id, old["name"], {"rotated_from": token_id})
        log.info("token.rotated", token_id=token_id, new_token_id=new_id, grace=grace)
        return CreatedToken(**self.get(new_id).model_dump(), token=secret)

    def delete(self, token_id: str, *, actor: str = "system") -> TokenResource:
        """Remove a token's record; the audit trail keeps that it existed."""
        now = self.clock.now()
        with self._changing(now, actor) as change:
            row = self._row(change.connection, token_id)
            resource = token_resource(row, now, self.policy)
            change.connection.execute(delete(_tokens).where(_tokens.c.id == token_id))
            _forget_history(change.connection, [token_id])
            change.audit("delete", token_id, row["name"], {"expires_at": iso(row["expires_at"])})
        log.info("token.deleted", token_id=token_id)
        return resource

    # --- verification -----------------------------------------------------------------------

    def verify(self, secret: str, *, quiet: bool = False) -> VerifiedToken:
        """Say whether *secret* is a valid token, and which; never log the secret.

        A secret of our shape with a wrong checksum is refused before any lookup. Otherwise
        its hash is looked up through the unique index and compared in constant time. A
        refusal is logged (by token id or fingerprint) unless *quiet*: the HTTP API logs its
        own line, with the client and the path.
        """
        now = self.clock.now()
        presented = secret.strip()

        def refuse(reason: str, **where: Any) -> None:
            if not quiet:
                log.warning("token.verify_failed", reason=reason, **where)

        if has_our_shape(presented, self.prefix) and not checksum_ok(presented, self.prefix):
            refuse("checksum", fingerprint=fingerprint(presented))
            return VerifiedToken(valid=False, reason="invalid")
        digest = hash_secret(presented, self.pepper)
        with self.database.read() as connection:
            row = (
                connection.execute(select(_tokens).where(_tokens.c.secret_hash == digest))
                .mappings()
                .first()
            )
        if row is None or not hmac.compare_digest(row["secret_hash"] or "", digest):
            refuse("unknown", fingerprint=fingerprint(presented))
            return VerifiedToken(valid=False, reason="invalid")
        described = {
            "id": row["id"],
            "name": row["name"],
            "role": row["role"],
            "permissions": list(row["permissions"] or []),
            "expires_at": row["expires_at"],
        }
        if row["revoked_at"] is not None and row["revoked_at"] <= now:
            refuse("revoked", token_id=row["id"])
            return VerifiedToken(valid=False, reason="revoked", **described)
        if row["expires_at"] is not None and row["expires_at"] <= now:
            refuse("expired", token_id=row["id"])
            return VerifiedToken(valid=False, reason="expired", **described)
        return VerifiedToken(valid=True, reason="valid", **described)

    def record_last_used(self, used: Mapping[str, datetime]) -> int:
        """Write tokens' last-use times in one batched UPDATE; return how many rows moved.

        The HTTP API collects these in memory and calls this at most every few seconds, so
        a request costs no write. A time never moves backwards: a replica flushing an older
        time leaves a newer one alone.
        """
        if not used:
            return 0
        statement = (
            update(_tokens)
            .where(
                _tokens.c.id == bindparam("k_id"),
                _tokens.c.last_used_at.is_(None) | (_tokens.c.last_used_at < bindparam("v_at")),
            )
            .values(last_used_at=bindparam("v_at"))
        )
        rows = [{"k_id": token_id, "v_at": at} for token_id, at in used.items()]
        with self.database.write() as connection:
            result = connection.execute(statement, rows)
        return max(result.rowcount, 0)

    # --- import and export (notifier.tokens.transfer) ---------------------------------------

    def import_records(
        self,
        records: Iterable[ImportRecord],
        *,
        actor: str = "system",
        staged: Callable[[int], object] | None = None,
        progress: Callable[[int], object] | None = None,
        before_commit: Callable[[], object] | None = None,
    ) -> ImportReport:
        """Upsert *records*, read once, by id in one transaction (transfer.import_records)."""
        return transfer.import_records(
            self.database,
            records,
            now=self.clock.now(),
            actor=actor,
            staged=staged,
            progress=progress,
            before_commit=before_commit,
        )

    def export(self) -> Iterator[dict[str, Any]]:
        """Every token's metadata, in the shape :meth:`import_records` accepts; no hashes."""
        return transfer.export_records(self.database)
