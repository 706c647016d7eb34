"""The daemon's own tokens: create, list, get, revoke, rotate, delete, verify, import, export.

The plaintext secret exists only in the return value of :meth:`TokenStore.create` and
:meth:`TokenStore.rotate`; the table keeps its hash. Every change writes an audit event in the
same transaction.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, RowMapping, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from notifier import audit
from notifier.core.clock import Clock
from notifier.core.ids import short_id
from notifier.core.limits import MAX_LIFETIME, MAX_LIFETIME_TEXT
from notifier.core.model import WatchedToken
from notifier.core.policy import Policy, days_left
from notifier.db.database import BulkStatement, Database
from notifier.db.models import DeliveryStateRow, Notification, Token
from notifier.resources import CreatedToken, TokenResource, TokenStatus, VerifiedToken
from notifier.runtime.logs import rfc3339
from notifier.tokens.fields import TokenFields, TokenInputError, check_fields
from notifier.tokens.secrets import (
    checksum_ok,
    fingerprint,
    generate_secret,
    has_our_shape,
    hash_secret,
)

_ID_ATTEMPTS = 3
_IMPORT_CHUNK = 500
STORE = "store"
# Fields an import may set, in export order; export writes exactly these.
RECORD_FIELDS = (
    "id",
    "name",
    "role",
    "permissions",
    "owner",
    "labels",
    "description",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "rotated_from",
    "superseded_by",
)

log = structlog.get_logger("notifier.tokens")
_tokens = Token.__table__


_TOKEN_COLUMNS = tuple(column.key for column in _tokens.columns)
# What a new token has where an import row says nothing (created_at: the import's time).
_NEW_TOKEN: dict[str, Any] = {
    "role": None,
    "permissions": [],
    "owner": None,
    "labels": {},
    "description": None,
    "secret_hash": None,
    "revoked_at": None,
    "last_used_at": None,
    "rotated_from": None,
    "superseded_by": None,
}


@dataclass(frozen=True, slots=True)
class _ImportWrites:
    """The bulk statements of one import."""

    insert: BulkStatement
    created: BulkStatement


class TokenNotFoundError(LookupError):
    """No token has the given id."""


class TokenStateError(ValueError):
    """The token cannot undergo the operation in its present state (rotate a revoked one)."""


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """One row of an import: the fields it carries (absent ones keep their stored value)."""

    line: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Revocation:
    """What :meth:`TokenStore.revoke_once` did."""

    token: TokenResource
    already_revoked: bool  # True: it was revoked before (token.revoked_at says when)


@dataclass
class ImportReport:
    """What an import did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    ids: list[str] = field(default_factory=list)


class TokenStore:
    """The token lifecycle over the database."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        policy: Policy,
        *,
        prefix: str,
        pepper: str | None,
        max_lifetime: timedelta | None = None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._policy = policy
        self._prefix = prefix
        self._pepper = pepper
        self._max_lifetime = max_lifetime  # NOTIFIER_TOKEN_MAX_LIFETIME; None: only the century

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
        now = self._clock.now()
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
            max_lifetime=self._max_lifetime,
            not_after=not_after,
        )
        with self._database.write() as connection:
            token_id, secret = self._insert(connection, fields, now, rotated_from=None)
            audit.record(
                connection,
                [
                    audit.event(
                        at=now,
                        actor=actor,
                        action="create",
                        token_id=token_id,
                        token_name=fields.name,
                    )
                ],
            )
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
        secret = generate_secret(self._prefix)
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
                            secret_hash=hash_secret(secret, self._pepper),
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

    def list(
        self,
        *,
        include_revoked: bool = False,
        only_revoked: bool = False,
        expiring_within: timedelta | None = None,
    ) -> list[TokenResource]:
        """Tokens, soonest expiry first: by default those not revoked.

        *expiring_within* keeps those that expire within that time from now (not yet expired).
        """
        now = self._clock.now()
        query = select(_tokens).order_by(
            _tokens.c.expires_at.is_(None), _tokens.c.expires_at, _tokens.c.name, _tokens.c.id
        )
        revoked = _tokens.c.revoked_at.is_not(None) & (_tokens.c.revoked_at <= now)
        if only_revoked:
            query = query.where(revoked)
        elif not include_revoked:
            query = query.where(~revoked)
        if expiring_within is not None:
            query = query.where(
                _tokens.c.expires_at > now, _tokens.c.expires_at <= now + expiring_within
            )
        with self._database.read() as connection:
            rows = connection.execute(query).all()
        return [self._resource(row._mapping, now) for row in rows]  # noqa: SLF001

    def get(self, token_id: str) -> TokenResource:
        """Return one token, or raise :class:`TokenNotFoundError`."""
        with self._database.read() as connection:
            row = self._row(connection, token_id)
        return self._resource(row, self._clock.now())

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
        now = self._clock.now()
        with self._database.write() as connection:
            row = self._row(connection, token_id)
            already = row["revoked_at"] is not None and row["revoked_at"] <= now
            if not already:
                connection.execute(
                    update(_tokens).where(_tokens.c.id == token_id).values(revoked_at=now)
                )
                audit.record(
                    connection,
                    [
                        audit.event(
                            at=now,
                            actor=actor,
                            action="revoke",
                            token_id=token_id,
                            token_name=row["name"],
                        )
                    ],
                )
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
        now = self._clock.now()
        if grace < timedelta(0):
            raise TokenInputError("grace: must not be negative")
        with self._database.write() as connection:
            old = self._row(connection, token_id)
            if old["revoked_at"] is not None and old["revoked_at"] <= now:
                raise TokenStateError(f"token {token_id!r} is revoked; create a new one instead")
            if old["superseded_by"] is not None:
                raise TokenStateError(
                    f"token {token_id!r} was already rotated into {old['superseded_by']!r}"
                )
            if expires_at is None and ttl is not None:
                if not timedelta(0) < ttl <= MAX_LIFETIME:
                    raise TokenInputError(f"ttl: must be positive and at most {MAX_LIFETIME_TEXT}")
                expires_at = now + ttl
            elif expires_at is None and old["expires_at"] is not None:
                lifetime = old["expires_at"] - old["created_at"]
                if lifetime > MAX_LIFETIME:
                    raise TokenInputError(
                        f"expires_at: the token's own lifetime is more than {MAX_LIFETIME_TEXT}, "
                        "too long to carry over to the new one"
                    )
                expires_at = now + lifetime
            fields = check_fields(
                TokenFields(
                    name=old["name"],
                    expires_at=expires_at,
                    role=old["role"],
                    permissions=tuple(old["permissions"] or ()),
                    owner=old["owner"],
                    labels=old["labels"] or {},
                    description=old["description"],
                ),
                now=now,
                max_lifetime=self._max_lifetime,
                not_after=not_after,
            )
            new_id, secret = self._insert(connection, fields, now, rotated_from=token_id)
            connection.execute(
                update(_tokens)
                .where(_tokens.c.id == token_id)
                .values(superseded_by=new_id, revoked_at=now + grace)
            )
            details = {"new_token_id": new_id, "grace_seconds": int(grace.total_seconds())}
            audit.record(
                connection,
                [
                    audit.event(
                        at=now,
                        actor=actor,
                        action="rotate",
                        token_id=token_id,
                        token_name=old["name"],
                        details=details,
                    ),
                    audit.event(
                        at=now,
                        actor=actor,
                        action="create",
                        token_id=new_id,
                        token_name=old["name"],
                        details={"rotated_from": token_id},
                    ),
                ],
            )
        log.info("token.rotated", token_id=token_id, new_token_id=new_id, grace=grace)
        return CreatedToken(**self.get(new_id).model_dump(), token=secret)

    def delete(self, token_id: str, *, actor: str = "system") -> TokenResource:
        """Remove a token's record; the audit trail keeps that it existed."""
        now = self._clock.now()
        with self._database.write() as connection:
            row = self._row(connection, token_id)
            resource = self._resource(row, now)
            connection.execute(delete(_tokens).where(_tokens.c.id == token_id))
            # Its delivery state and UI notification would otherwise outlive it.
            for table in (DeliveryStateRow.__table__, Notification.__table__):
                connection.execute(
                    delete(table).where(table.c.source == STORE, table.c.token_id == token_id)
                )
            audit.record(
                connection,
                [
                    audit.event(
                        at=now,
                        actor=actor,
                        action="delete",
                        token_id=token_id,
                        token_name=row["name"],
                        details={"expires_at": _iso(row["expires_at"])},
                    )
                ],
            )
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
        now = self._clock.now()
        presented = secret.strip()

        def refuse(reason: str, **where: Any) -> None:
            if not quiet:
                log.warning("token.verify_failed", reason=reason, **where)

        if has_our_shape(presented, self._prefix) and not checksum_ok(presented, self._prefix):
            refuse("checksum", fingerprint=fingerprint(presented))
            return VerifiedToken(valid=False, reason="invalid")
        digest = hash_secret(presented, self._pepper)
        with self._database.read() as connection:
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
        with self._database.write() as connection:
            result = connection.execute(statement, rows)
        return max(result.rowcount, 0)

    # --- import and export ------------------------------------------------------------------

    def import_records(
        self,
        records: Sequence[ImportRecord],
        *,
        actor: str = "system",
        progress: Callable[[int], object] | None = None,
        before_commit: Callable[[], object] | None = None,
    ) -> ImportReport:
        """Upsert *records* by id in one transaction: all of them, or nothing.

        Fields a record does not carry keep their stored value (or the default for a new
        token). A record equal to what is stored changes nothing, so importing twice is
        the same as importing once. *progress* hears how many records each chunk wrote;
        *before_commit* is called once every row is written, just before the commit (the
        CLI holds signals back from there, to say truthfully whether the import happened).
        """
        now = self._clock.now()
        report = ImportReport()
        # New tokens and their "created" events are most of a large import: both go to the
        # driver as bulk statements, the event's constant fields converted once.
        writes = _ImportWrites(
            insert=self._database.bulk(_tokens.insert(), _TOKEN_COLUMNS),
            created=self._database.bulk(
                audit.insert_events(
                    at=now, actor=actor, action="import", details={"created": True}
                ),
                ("token_id", "token_name"),
            ),
        )
        with self._database.write() as connection:
            for start in range(0, len(records), _IMPORT_CHUNK):
                chunk = records[start : start + _IMPORT_CHUNK]
                self._import_chunk(connection, chunk, now, actor, report, writes)
                if progress is not None:
                    progress(len(chunk))
            if before_commit is not None:
                before_commit()
        log.info(
            "token.imported",
            created=report.created,
            updated=report.updated,
            unchanged=report.unchanged,
        )
        return report

    def _import_chunk(  # noqa: PLR0917 - one chunk of one import's state
        self,
        connection: Connection,
        chunk: Sequence[ImportRecord],
        now: datetime,
        actor: str,
        report: ImportReport,
        writes: _ImportWrites,
    ) -> None:
        ids = [record.values["id"] for record in chunk]
        existing = {
            row["id"]: row
            for row in connection.execute(select(_tokens).where(_tokens.c.id.in_(ids))).mappings()
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        defaults = {**_NEW_TOKEN, "created_at": now}
        for record in chunk:
            values = record.values
            token_id = values["id"]
            stored = existing.get(token_id)
            if stored is None:
                inserts.append({**defaults, **values})
                continue
            changed = {key: value for key, value in values.items() if stored[key] != value}
            if not changed:
                report.unchanged += 1
                continue
            updates.append(
                {"k_id": token_id, **{f"v_{key}": value for key, value in changed.items()}}
            )
            report.updated += 1
            events.append(
                audit.event(
                    at=now,
                    actor=actor,
                    action="import",
                    token_id=token_id,
                    token_name=values.get("name", stored["name"]),
                    details={"changed": sorted(changed)},
                )
            )
        writes.insert.execute(connection, inserts)
        writes.created.execute(
            connection, [{"token_id": row["id"], "token_name": row["name"]} for row in inserts]
        )
        report.created += len(inserts)
        # Rows that change the same columns share one executemany.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in updates:
            groups.setdefault(tuple(sorted(key for key in row if key != "k_id")), []).append(row)
        for keys, rows in groups.items():
            statement = (
                update(_tokens)
                .where(_tokens.c.id == bindparam("k_id"))
                .values({key[2:]: bindparam(key) for key in keys})
            )
            connection.execute(statement, rows)
        audit.record(connection, events)
        report.ids.extend(ids)

    def export(self) -> Iterator[dict[str, Any]]:
        """Every token's metadata, in the shape :meth:`import_records` accepts; no hashes."""
        with self._database.read() as connection:
            rows = connection.execute(select(_tokens).order_by(_tokens.c.id)).mappings().all()
        for row in rows:
            yield {
                key: _iso(row[key]) if isinstance(row[key], datetime) else row[key]
                for key in RECORD_FIELDS
            }

    # --- presentation -----------------------------------------------------------------------

    def _resource(self, row: RowMapping, now: datetime) -> TokenResource:
        token = WatchedToken(
            source=STORE,
            token_id=row["id"],
            name=row["name"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            owner=row["owner"],
        )
        return TokenResource(
            id=token.token_id,
            name=token.name,
            role=row["role"],
            permissions=list(row["permissions"] or []),
            owner=row["owner"],
            labels=dict(row["labels"] or {}),
            description=row["description"],
            created_at=row["created_at"],
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
            last_used_at=row["last_used_at"],
            rotated_from=row["rotated_from"],
            superseded_by=row["superseded_by"],
            status=self._status(token, row["superseded_by"], now),
            days_left=(
                days_left(token.expires_at, now, self._policy.log_slice)
                if token.expires_at is not None and token.expires_at > now
                else None
            ),
        )

    def _status(self, token: WatchedToken, superseded_by: str | None, now: datetime) -> TokenStatus:
        if token.revoked_at is not None and token.revoked_at <= now:
            return "revoked"
        if token.expires_at is not None and token.expires_at <= now:
            return "expired"
        if superseded_by is not None:
            return "superseded"
        if self._policy.is_expiring(token, now):
            return "expiring"
        return "active"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)
