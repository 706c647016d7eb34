"""Count the changes to tokens that can close a loop, and index open loops by expiry.

A pass looks for a sink's open loops (last told "expiring") whose token has left the window.
A token leaves it in two ways: **by a change** (revoked, rotated, deleted, its expiry moved)
or **by time** (expired longer ago than the lookback, or a revocation scheduled for later
came). Walking every open loop each pass finds both, and costs a probe per open loop: most
of a steady pass at a fleet's scale. So:

- triggers on ``tokens`` count the changes in ``meta`` under ``tokens.changes``: an update
  that moves ``id``, ``expires_at``, ``revoked_at`` or ``superseded_by``, and a delete. A
  pass walks every open loop only when the count moved since its last walk that found
  nothing (notifier/delivery/ledger/candidates.py). Triggers, not the application, so that
  an operator's own ``UPDATE tokens`` is counted too. SQLite's fire per row, when a value
  changed; PostgreSQL's per statement, with its transition tables, so that an import that
  changes a million rows bumps the count once and does not pile row versions on ``meta``;
- ``ix_delivery_state_open`` (partial on open loops) is keyed (source, sink, expires_at)
  instead of (source, sink, token_id): the loops that left the window by time are one range
  scan of it, and the walk over every loop follows it in (expiry, token) order. One index,
  not two: each loop a pass opens or closes writes it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN_LOOP = "last_kind = 'expiring'"
_KEY = "tokens.changes"
_COLUMNS = ("id", "expires_at", "revoked_at", "superseded_by")

_SQLITE = [
    f"""
    CREATE TRIGGER tokens_changes_update AFTER UPDATE OF {", ".join(_COLUMNS)} ON tokens
    WHEN {" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _COLUMNS)}
    BEGIN
      UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = '{_KEY}';
    END
    """,
    f"""
    CREATE TRIGGER tokens_changes_delete AFTER DELETE ON tokens
    BEGIN
      UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = '{_KEY}';
    END
    """,
]
_BUMP = f"UPDATE meta SET value = (value::bigint + 1)::text WHERE key = '{_KEY}';"
_CHANGED = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in _COLUMNS[1:])
_POSTGRESQL = [
    f"""
    CREATE FUNCTION notifier_tokens_updated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM old_rows o FULL JOIN new_rows n ON n.id = o.id
                 WHERE o.id IS NULL OR n.id IS NULL OR {_CHANGED}) THEN
        {_BUMP}
      END IF;
      RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION notifier_tokens_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM old_rows) THEN
        {_BUMP}
      END IF;
      RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION notifier_tokens_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      {_BUMP}
      RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER tokens_changes_update AFTER UPDATE ON tokens
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notifier_tokens_updated()
    """,
    """
    CREATE TRIGGER tokens_changes_delete AFTER DELETE ON tokens
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notifier_tokens_deleted()
    """,
    """
    CREATE TRIGGER tokens_changes_truncate AFTER TRUNCATE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION notifier_tokens_truncated()
    """,
]


def upgrade() -> None:
    op.execute(sa.text(f"INSERT INTO meta (key, value) VALUES ('{_KEY}', '0')"))
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRESQL if dialect == "postgresql" else _SQLITE:
        op.execute(sa.text(statement))
    op.drop_index("ix_delivery_state_open", "delivery_state")
    _open_loops(["source", "sink", "expires_at"])


def _open_loops(columns: list[str]) -> None:
    op.create_index(
        "ix_delivery_state_open",
        "delivery_state",
        columns,
        sqlite_where=sa.text(_OPEN_LOOP),
        postgresql_where=sa.text(_OPEN_LOOP),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_state_open", "delivery_state")
    _open_loops(["source", "sink", "token_id"])
    if op.get_bind().dialect.name == "postgresql":
        for name in ("tokens_changes_update", "tokens_changes_delete", "tokens_changes_truncate"):
            op.execute(sa.text(f"DROP TRIGGER {name} ON tokens"))
        op.execute(sa.text("DROP FUNCTION notifier_tokens_updated()"))
        op.execute(sa.text("DROP FUNCTION notifier_tokens_deleted()"))
        op.execute(sa.text("DROP FUNCTION notifier_tokens_truncated()"))
    else:
        for name in ("tokens_changes_update", "tokens_changes_delete"):
            op.execute(sa.text(f"DROP TRIGGER {name}"))
    op.execute(sa.text(f"DELETE FROM meta WHERE key = '{_KEY}'"))
